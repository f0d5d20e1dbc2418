"""A handwritten Llama (Llama-2 architecture) that is the same function as Hugging Face's LlamaForCausalLM.

Module names are Hugging Face's (model.embed_tokens, model.layers.N.self_attn.q_proj, mlp.gate_proj,
input_layernorm, model.norm, lm_head), so an HF safetensors checkpoint loads with zero renaming, and LoRA
targets are the names users already type (q_proj, v_proj). This file knows nothing of LoRA or data.

    model = Llama.from_pretrained("Llama-2-7b-chat-hf", device="cuda", dtype=torch.bfloat16)
    logits = model(tokens)                      # (B, T, vocab)
    loss = model.loss(tokens, labels)           # labels aligned with tokens, -100 = no loss (shifted inside)

Packed attention (rows without padding, a shared prompt prefix once) is packing.py's; decoding is generate.py's.
"""
import json
import os
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from files import read_json, write_file, write_text
from packing import Packing, Queries, attend, shared_prefixes


class CheckpointError(ValueError):
    """A checkpoint we cannot load; the message names the file and the fix (scripts print it as one line)."""


@dataclass
class ModelArgs:
    # Field names are config.json's, so `ModelArgs(**subset_of_config)` needs no mapping table.
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32  # < num_attention_heads means grouped-query attention (GQA)
    head_dim: int = 0  # 0 = hidden_size // num_attention_heads
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    vocab_size: int = 32000
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    bos_token_id: int = 1
    eos_token_id: int = 2

    def __post_init__(self):
        if not self.head_dim:
            self.head_dim = self.hidden_size // self.num_attention_heads
        assert self.num_attention_heads % self.num_key_value_heads == 0, "heads must be a multiple of kv heads"

    @classmethod
    def from_config(cls, config: dict, path: str = "config.json") -> "ModelArgs":
        """Fill from an HF config.json dict; refuse (one line) anything this Llama does not implement."""
        def refuse(what):
            raise CheckpointError(f"{path}: {what} is not supported by this Llama implementation "
                                  "(plain Llama/Llama-2 only); use a Llama-2-style checkpoint")
        if not isinstance(config, dict):
            raise CheckpointError(f"{path}: holds {type(config).__name__}, not an object of settings; fix config.json")
        if config.get("model_type", "llama") != "llama":
            refuse(f"model_type {config['model_type']!r}")
        if config.get("rope_scaling"):
            refuse(f"rope_scaling {config['rope_scaling']}")
        rope = config.get("rope_parameters") or {}  # transformers >= 5 writes rope_theta in here
        if rope.get("rope_type", "default") != "default":
            refuse(f"rope_parameters.rope_type {rope['rope_type']!r}")
        if config.get("hidden_act", "silu") != "silu":
            refuse(f"hidden_act {config['hidden_act']!r}")
        for flag in ("attention_bias", "mlp_bias"):
            if config.get(flag):
                refuse(f"{flag}=true")
        kw = {k: config[k] for k in cls.__dataclass_fields__ if config.get(k) is not None}
        if "rope_theta" in rope:
            kw["rope_theta"] = rope["rope_theta"]
        kw.setdefault("num_key_value_heads", config.get("num_attention_heads", cls.num_attention_heads))
        for k in ("bos_token_id", "eos_token_id"):  # some configs hold a list of EOS ids
            if isinstance(kw.get(k), list) and kw[k]:
                kw[k] = kw[k][0]
        for k, v in kw.items():  # config.json's types: a bool, a positive number, an int (a size at least 1)
            kind = cls.__dataclass_fields__[k].type
            if kind is bool:
                ok = isinstance(v, bool)
            elif kind is float:
                ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
            else:
                least = 0 if k in ("head_dim", "bos_token_id", "eos_token_id") else 1
                ok = isinstance(v, int) and not isinstance(v, bool) and v >= least
            if not ok:
                want = "bool" if kind is bool else "positive " + kind.__name__
                raise CheckpointError(f"{path}: {k} is {v!r}, not a {want}; fix config.json")
        if kw["num_attention_heads"] % kw["num_key_value_heads"]:
            raise CheckpointError(f"{path}: num_attention_heads {kw['num_attention_heads']} is not a multiple of "
                                  f"num_key_value_heads {kw['num_key_value_heads']}; fix config.json")
        return cls(**kw)

    def to_config(self, dtype: torch.dtype) -> dict:
        c = asdict(self)
        c.update(architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu",
                 attention_bias=False, mlp_bias=False, rope_scaling=None,
                 rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
                 torch_dtype=str(dtype).removeprefix("torch."))
        return c


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # Normalise in fp32 then cast back before the weight: exactly HF's order, which matters in bf16.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Rotate-half RoPE, the layout of HF Llama checkpoints (their q/k weights are already permuted for it,
    so unlike Meta's interleaved-pairs original we need no q/k permutation when loading)."""

    def __init__(self, args: ModelArgs, device=None):
        super().__init__()
        exps = torch.arange(0, args.head_dim, 2, dtype=torch.int64, device=device).float() / args.head_dim
        self.register_buffer("inv_freq", 1.0 / (args.rope_theta ** exps), persistent=False)

    def forward(self, positions, dtype):
        freqs = positions[..., None].float() * self.inv_freq  # (B, T, head_dim/2), computed in fp32
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]  # (B, 1, T, head_dim)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class KVCache(nn.Module):
    """Preallocated keys/values of one layer for decoding: (B, kv_heads, max_len, head_dim)."""

    def __init__(self, batch, kv_heads, max_len, head_dim, dtype, device, zeroed=None):
        """zeroed: only the first `zeroed` slots are zeroed (a left-padded batch's padding: slots past the
        prompts are written before they are read); None: all."""
        super().__init__()
        make = torch.zeros if zeroed is None else torch.empty
        self.k = make(batch, kv_heads, max_len, head_dim, dtype=dtype, device=device)
        self.v = make(batch, kv_heads, max_len, head_dim, dtype=dtype, device=device)
        if zeroed:
            self.k[:, :, :zeroed] = 0
            self.v[:, :, :zeroed] = 0

    def keep(self, rows, used):
        """Only these rows (a LongTensor) from now on; the first `used` slots are copied, the rest are
        written before they are read."""
        k = self.k.new_empty(len(rows), *self.k.shape[1:])
        v = self.v.new_empty(len(rows), *self.v.shape[1:])
        k[:, :, :used] = self.k[rows, :, :used]
        v[:, :, :used] = self.v[rows, :, :used]
        self.k, self.v = k, v

    def update(self, start, k, v):
        end = start + k.shape[2]
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = args.num_attention_heads, args.num_key_value_heads, args.head_dim
        self.q_proj = nn.Linear(args.hidden_size, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(args.hidden_size, self.n_kv * self.head_dim, bias=False)
        self.v_proj = nn.Linear(args.hidden_size, self.n_kv * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, args.hidden_size, bias=False)
        self.cache = None  # a KVCache while generate() runs (Llama.setup_caches)

    def forward(self, x, cos, sin, mask=None, start=0):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.cache is not None:
            k, v = self.cache.update(start, k, v)
        if self.n_kv != self.n_heads:  # GQA: each kv head serves n_heads / n_kv query heads
            k = k.repeat_interleave(self.n_heads // self.n_kv, dim=1)
            v = v.repeat_interleave(self.n_heads // self.n_kv, dim=1)
        if mask is None:  # training / plain forward: one causal sequence per row, no padding on the left
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))

    def packed(self, x, cos, sin, pack: Packing, ql: Queries):
        """Attention over packed tokens (1, N, hidden) (packing.py: no padding, shared prompt prefixes computed
        once): keys and values of every packed token, queries at ql only. The projections and RoPE run here on
        the packed tokens; packing.attend lays them out and runs the attention."""
        N = x.shape[1]
        k = self.k_proj(x).view(1, N, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(1, N, self.n_kv, self.head_dim).transpose(1, 2)
        k = (k * cos + rotate_half(k) * sin)[0].transpose(0, 1)  # (N, kv heads, head_dim)
        v = v[0].transpose(0, 1)
        xq = x if ql.idx is None else x[:, ql.idx]
        n = xq.shape[1]
        q = self.q_proj(xq).view(1, n, self.n_heads, self.head_dim).transpose(1, 2)
        qc, qs = (cos, sin) if ql.idx is None else (cos[:, :, ql.idx], sin[:, :, ql.idx])
        q = (q * qc + rotate_half(q) * qs)[0].transpose(0, 1)  # (n, heads, head_dim)
        y = attend(q, k, v, pack, ql, self.cache)
        return self.o_proj(y.reshape(1, n, -1))


class MLP(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.gate_proj = nn.Linear(args.hidden_size, args.intermediate_size, bias=False)
        self.up_proj = nn.Linear(args.hidden_size, args.intermediate_size, bias=False)
        self.down_proj = nn.Linear(args.intermediate_size, args.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.input_layernorm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.self_attn = Attention(args)
        self.post_attention_layernorm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.mlp = MLP(args)

    def forward(self, x, cos, sin, mask=None, start=0):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, start)
        return x + self.mlp(self.post_attention_layernorm(x))

    def packed(self, x, cos, sin, pack, ql):
        """forward() on packed tokens (Attention.packed), outputs at ql (Queries): the last block needs every
        token's keys and values but its queries, o_proj and MLP only where an output is wanted."""
        a = self.self_attn.packed(self.input_layernorm(x), cos, sin, pack, ql)
        x = (x if ql.idx is None else x[:, ql.idx]) + a
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):  # the `model.` prefix of HF's parameter names
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
        self.layers = nn.ModuleList(Block(args) for _ in range(args.num_hidden_layers))
        self.norm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(args)


class Llama(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.model = LlamaModel(args)
        self.lm_head = nn.Linear(args.hidden_size, args.vocab_size, bias=False)
        if args.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.gradient_checkpointing = False
        self.compiled = False  # compile_blocks() was called
        self.packed = True  # loss() packs rows (Packing); False: the padded batch (a compiled model's; plan.py's model)
        self.share_prefixes = True  # loss() and generate() compute a prompt prefix shared by rows once

    def setup_caches(self, batch, max_len, dtype, device, zeroed=None):
        """A KVCache per layer for decoding `batch` rows of up to max_len tokens (zeroed: see KVCache)."""
        a = self.args
        for layer in self.model.layers:
            layer.self_attn.cache = KVCache(batch, a.num_key_value_heads, max_len, a.head_dim, dtype, device, zeroed)

    def keep_cache_rows(self, rows, used):
        """Only these rows of every layer's cache from now on (rows that ended decoding leave the batch)."""
        for layer in self.model.layers:
            layer.self_attn.cache.keep(rows, used)

    def drop_caches(self):
        for layer in self.model.layers:
            layer.self_attn.cache = None

    def hidden(self, tokens, positions=None, mask=None, start=0):
        """The last block's output (B, T, hidden), before the final norm."""
        B, T = tokens.shape
        if positions is None:  # every row at the same positions: cos/sin broadcast over the batch
            positions = torch.arange(start, start + T, device=tokens.device)[None]
        x = self.model.embed_tokens(tokens)
        if self.compiled and torch.is_grad_enabled():
            x.requires_grad_()  # see compile_blocks
        cos, sin = self.model.rotary_emb(positions, x.dtype)
        for layer in self.model.layers:
            if self.compiled:
                mark_unbacked(x, 0)  # see compile_blocks
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(layer, x, cos, sin, mask, start, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask, start)
        return x

    def packed_hidden(self, tokens, pack: Packing):
        """The last block's output (1, n, hidden) at pack.out of the packed tokens (1, N): the same values as
        hidden() on the padded batch, without computing padding, a shared prefix twice, or anything but keys
        and values in the last block where no output is wanted."""
        x = self.model.embed_tokens(tokens)
        cos, sin = self.model.rotary_emb(pack.positions, x.dtype)
        last = len(self.model.layers) - 1
        for i, layer in enumerate(self.model.layers):
            ql = pack.out if i == last else pack.all
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(layer.packed, x, cos, sin, pack, ql, use_reentrant=False)
            else:
                x = layer.packed(x, cos, sin, pack, ql)
        return x

    def compile_blocks(self, **compile_kwargs):
        """torch.compile each block in place (state-dict keys stay clean), so that a training run compiles two
        graphs, one with grad and one without (validation), whatever the shapes of its batches. All blocks share
        one code object and so one cache of graphs (8 by default); a graph is reused only if its guards hold:
        - dynamic=True: the sequence and batch sizes are symbols from the first compile. (mark_dynamic would do
          it per dimension but on every block input, a new tensor per block; automatic dynamic shapes would
          first compile a static graph, then recompile when the length changes.)
        - the batch size is marked unbacked: a backed size is specialised at 1, so a one-sample micro-batch
          (an epoch's last) would compile a graph of its own;
        - a frozen embedding (LoRA) gives block 0 an input without grad and the later blocks one with, one
          graph each: with grad on, the embedding's output asks for grad too. That costs the unused gradient
          of block 0's input (1/layers of the activation gradients) and changes no parameter's gradient."""
        for layer in self.model.layers:
            layer.compile(dynamic=True, **compile_kwargs)
        self.compiled = True
        return self

    def forward(self, tokens, *, positions=None, mask=None, start=0, last_only=False, packing=None):
        """Logits (B, T, vocab) for tokens (B, T); last_only=True projects only the last position (decoding
        needs no others). With packing (a Packing of tokens (1, N)): logits (1, n, vocab) at its queries."""
        if packing is not None:
            return self.lm_head(self.model.norm(self.packed_hidden(tokens, packing)))
        x = self.hidden(tokens, positions, mask, start)
        return self.lm_head(self.model.norm(x[:, -1:] if last_only else x))

    def loss(self, tokens, labels, reduction="mean"):
        """Cross-entropy of predicting labels[t + 1] at position t (labels aligned with tokens, the HF
        convention; -100 = no loss). Only the positions that carry a label go through the final norm, lm_head
        and the fp32 cross-entropy: a 3-token answer after a 1000-token prompt projects 3 positions onto the
        vocabulary, not 1000 (same loss and gradients as full logits). reduction "sum" gives the summed loss,
        which train.py divides by the answer-token count of the whole accumulated batch.
        Rows are packed without padding (packed_hidden): a row is computed up to its last labelled position
        only, a prompt prefix shared by several rows (shared_prefixes: a template's instructions) is computed
        once, and the last block computes queries, o_proj and MLP at labelled positions only (a compiled model
        keeps the padded batch: its graphs are of forward(); so does packed=False). The padded batch's memory,
        which plan.py plans for, bounds the packed one's."""
        target = labels[:, 1:]
        keep = target != -100
        if self.compiled or not self.packed or not keep.any():
            x = self.hidden(tokens)[:, :-1]
            logits = self.lm_head(self.model.norm(x[keep]))
            return F.cross_entropy(logits.float(), target[keep], reduction=reduction)
        T = keep.shape[1]
        last = torch.where(keep, torch.arange(T, device=keep.device), -1).amax(1)  # per row; -1: no label
        rows = (last >= 0).nonzero()[:, 0]
        lengths = (last[rows] + 1).tolist()
        inputs = tokens[rows, :-1]
        shared = shared_prefixes([r[:n] for r, n in zip(inputs.tolist(), lengths)]) if self.share_prefixes else None
        queries = keep[rows].nonzero()  # (row, position) pairs, row-major: target[keep]'s order
        if (not shared or not any(n for _, n in shared)) and min(lengths) == T and 2 * len(queries) >= T * len(rows):
            # nothing to skip (stage 0: whole rows, all labelled): the padded batch, without packing's copies
            x = self.hidden(tokens)[:, :-1]
            return F.cross_entropy(self.lm_head(self.model.norm(x[keep])).float(), target[keep], reduction=reduction)
        pack = Packing(lengths, shared, queries, device=tokens.device)
        x = self.packed_hidden(inputs[pack.src_rows.to(tokens.device), pack.src_pos.to(tokens.device)][None], pack)[0]
        return F.cross_entropy(self.lm_head(self.model.norm(x)).float(), target[keep], reduction=reduction)

    # ---- Hugging Face checkpoints in and out ----

    @classmethod
    def from_pretrained(cls, path, device="cpu", dtype=torch.float32) -> "Llama":
        """Load an HF-layout directory (config.json + model.safetensors or a sharded index).
        The model is built on the meta device and the loaded tensors are assigned in place, so a 13 GB
        checkpoint never exists twice in memory."""
        args = ModelArgs.from_config(read_config(path), os.path.join(path, "config.json"))
        with torch.device("meta"):
            model = cls(args)
        expected = {k: v.shape for k, v in model.state_dict().items()}
        if args.tie_word_embeddings:
            expected.pop("lm_head.weight")
        state = {}
        for file, keys in safetensors_files(path).items():
            with open_safetensors(file, device=device) as f:
                for key in keys:
                    if key.endswith("rotary_emb.inv_freq"):
                        continue  # old HF checkpoints saved this buffer; we recompute it
                    if key not in expected:
                        raise CheckpointError(f"{file}: unexpected tensor {key!r}; this is not a Llama "
                                              "checkpoint in HF layout (export it with transformers' save_pretrained)")
                    t = f.get_tensor(key)
                    if t.shape != expected[key]:
                        raise CheckpointError(f"{file}: tensor {key!r} has shape {tuple(t.shape)} but config.json "
                                              f"implies {tuple(expected[key])}; the config and weights do not match")
                    state[key] = t.to(dtype)
        missing = sorted(set(expected) - set(state))
        if missing:
            raise CheckpointError(f"{path}: {len(missing)} tensors missing from the safetensors files, e.g. "
                                  f"{missing[0]!r}; the download is incomplete or not a Llama checkpoint")
        model.load_state_dict(state, strict=False, assign=True)
        if args.tie_word_embeddings:
            model.lm_head.weight = model.model.embed_tokens.weight
        model.model.rotary_emb = RotaryEmbedding(args, device=device)  # buffers were on meta
        return model

    def save_pretrained(self, path, max_shard_bytes=5 * 1024**3):
        """Write config.json + model.safetensors (or shards + index) that transformers loads as they are.
        Each file is written under a temporary name then renamed (write_file), so a crash never leaves a torn
        file; the weights come after config.json, a shard index after the shards."""
        os.makedirs(path, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        if self.args.tie_word_embeddings:
            state.pop("lm_head.weight")
        dtype = next(iter(state.values())).dtype
        shards, size = [{}], 0
        for k, v in state.items():
            n = v.numel() * v.element_size()
            if shards[-1] and size + n > max_shard_bytes:
                shards.append({})
                size = 0
            shards[-1][k] = v
            size += n
        write_text(os.path.join(path, "config.json"), json.dumps(self.args.to_config(dtype), indent=2))
        if len(shards) == 1:
            names = ["model.safetensors"]
        else:
            names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        for name, shard in zip(names, shards):
            write_file(os.path.join(path, name), lambda tmp: save_file(shard, tmp, metadata={"format": "pt"}))
        if len(shards) > 1:  # last: it names the shards, which are all there now
            index = {"metadata": {"total_size": sum(v.numel() * v.element_size() for v in state.values())},
                     "weight_map": {k: name for name, shard in zip(names, shards) for k in shard}}
            write_text(os.path.join(path, "model.safetensors.index.json"), json.dumps(index, indent=2))

    def num_params(self):
        return sum(p.numel() for p in self.parameters())


def mark_unbacked(x, dim):
    """torch._dynamo's mark_unbacked (a size that is never specialised to 0 or 1), where this torch has it."""
    import torch._dynamo  # only a compiled model gets here; the import costs a second
    mark = getattr(torch._dynamo.decorators, "mark_unbacked", None)
    if mark is not None:
        mark(x, dim)


def read_config(path) -> dict:
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: no such model directory; pass --model DIR pointing at an HF Llama "
                              "checkpoint (config.json + *.safetensors)")
    file = os.path.join(path, "config.json")
    if not os.path.isfile(file):
        raise CheckpointError(f"{file}: missing; the model directory needs the config.json that comes "
                              "with an HF checkpoint")
    return read_json(file, CheckpointError, "the model's config.json (re-download it)")


def open_safetensors(file, error=CheckpointError, device="cpu"):
    """safe_open(file), or `error` with one line when the file is empty, truncated or not safetensors."""
    try:
        return safe_open(file, framework="pt", device=str(device))
    except (SafetensorError, OSError) as e:
        raise error(f"{file}: unreadable ({e}); the file is truncated or damaged: write or download it again") from None


def safetensors_files(path) -> dict:
    """{file: [tensor names]} for a single-file or sharded (model.safetensors.index.json) checkpoint."""
    single, index = os.path.join(path, "model.safetensors"), os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(single):
        with open_safetensors(single) as f:
            return {single: list(f.keys())}
    if os.path.isfile(index):
        weight_map = read_json(index, CheckpointError, "a safetensors index with a weight_map")
        weight_map = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(f"{index}: no weight_map of tensor name -> file; re-download the index")
        files = {}
        for key, name in weight_map.items():
            files.setdefault(os.path.join(path, name), []).append(key)
        for file in files:
            if not os.path.isfile(file):
                raise CheckpointError(f"{file}: listed in {index} but missing; finish the download")
        return files
    if any(n.endswith(".bin") for n in os.listdir(path)):
        raise CheckpointError(f"{path}: only pytorch_model*.bin found; .bin files are pickles (they can run code "
                              "on load and need a full extra copy in memory), so only safetensors are supported: "
                              "download the *.safetensors files, or convert once with transformers' "
                              "save_pretrained(dir, safe_serialization=True)")
    raise CheckpointError(f"{path}: no model.safetensors or model.safetensors.index.json; "
                          "download the checkpoint's safetensors files into it")
