"""A handwritten Llama (Llama-2 architecture) that is the same function as Hugging Face's LlamaForCausalLM.

Module names are Hugging Face's (model.embed_tokens, model.layers.N.self_attn.q_proj, mlp.gate_proj,
input_layernorm, model.norm, lm_head), so an HF safetensors checkpoint loads with zero renaming, and LoRA
targets are the names users already type (q_proj, v_proj). This file knows nothing of LoRA or data.

    model = Llama.from_pretrained("Llama-2-7b-chat-hf", device="cuda", dtype=torch.bfloat16)
    logits = model(tokens)                      # (B, T, vocab)
    loss = model.loss(tokens, labels)           # labels aligned with tokens, -100 = no loss (shifted inside)
    new_tokens = generate(model, [ids1, ids2], max_new_tokens=150, eos_id=2)
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
from tqdm import tqdm


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

    def __init__(self, batch, kv_heads, max_len, head_dim, dtype, device):
        super().__init__()
        self.k = torch.zeros(batch, kv_heads, max_len, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)

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
        self.cache = None  # a KVCache while generate() runs

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

    def forward(self, tokens, *, positions=None, mask=None, start=0, last_only=False):
        """Logits (B, T, vocab) for tokens (B, T); last_only=True projects only the last position (decoding
        needs no others)."""
        x = self.hidden(tokens, positions, mask, start)
        return self.lm_head(self.model.norm(x[:, -1:] if last_only else x))

    def loss(self, tokens, labels, reduction="mean"):
        """Cross-entropy of predicting labels[t + 1] at position t (labels aligned with tokens, the HF
        convention; -100 = no loss). Only the positions that carry a label go through the final norm, lm_head
        and the fp32 cross-entropy: a 3-token answer after a 1000-token prompt projects 3 positions onto the
        vocabulary, not 1000 (same loss and gradients as full logits). reduction "sum" gives the summed loss,
        which train.py divides by the answer-token count of the whole accumulated batch."""
        x = self.hidden(tokens)[:, :-1]
        target = labels[:, 1:]
        keep = target != -100
        logits = self.lm_head(self.model.norm(x[keep]))
        return F.cross_entropy(logits.float(), target[keep], reduction=reduction)

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
        Each file is written under a temporary name then renamed, so a crash never leaves a torn file."""
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
        if len(shards) == 1:
            names = ["model.safetensors"]
        else:
            names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
            index = {"metadata": {"total_size": sum(v.numel() * v.element_size() for v in state.values())},
                     "weight_map": {k: name for name, shard in zip(names, shards) for k in shard}}
            _atomic_write(os.path.join(path, "model.safetensors.index.json"), json.dumps(index, indent=2))
        for name, shard in zip(names, shards):
            tmp = os.path.join(path, name + ".tmp")
            save_file(shard, tmp, metadata={"format": "pt"})
            os.replace(tmp, os.path.join(path, name))
        _atomic_write(os.path.join(path, "config.json"), json.dumps(self.args.to_config(dtype), indent=2))

    def num_params(self):
        return sum(p.numel() for p in self.parameters())


def mark_unbacked(x, dim):
    """torch._dynamo's mark_unbacked (a size that is never specialised to 0 or 1), where this torch has it."""
    import torch._dynamo  # only a compiled model gets here; the import costs a second
    mark = getattr(torch._dynamo.decorators, "mark_unbacked", None)
    if mark is not None:
        mark(x, dim)


def _atomic_write(file, text):
    with open(file + ".tmp", "w") as f:
        f.write(text)
    os.replace(file + ".tmp", file)


def read_config(path) -> dict:
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: no such model directory; pass --model DIR pointing at an HF Llama "
                              "checkpoint (config.json + *.safetensors)")
    file = os.path.join(path, "config.json")
    if not os.path.isfile(file):
        raise CheckpointError(f"{file}: missing; the model directory needs the config.json that comes "
                              "with an HF checkpoint")
    return read_json(file, CheckpointError, "the model's config.json (re-download it)")


def read_json(file, error=ValueError, what="valid JSON"):
    """json.load(file), or `error` with one line naming the file: every JSON file a script reads goes here."""
    try:
        with open(file, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise error(f"{file}: not valid JSON ({e}); expected {what}") from None


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


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls run natively (3.3x fp32's speed measured on such a CPU); without
    them bf16 is emulated and slower than fp32."""
    cpu = torch.cpu
    return any(getattr(cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def resolve_device(device="auto", dtype="auto"):
    """The scripts' --device/--dtype -> (device, weight dtype, bf16 autocast on/off, why, in words).
    auto: CUDA keeps bf16 weights under bf16 autocast; a CPU with native bf16 keeps fp32 weights (and fp32
    LoRA / master weights) under bf16 autocast; any other CPU runs plain fp32. float32 turns autocast off."""
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    if dtype not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"--dtype must be auto, float32 or bfloat16, not {dtype!r}")
    if dtype == "float32":
        return dev, torch.float32, False, "float32 (asked for)"
    if dtype == "bfloat16":
        return dev, torch.bfloat16, True, "bf16 weights, bf16 autocast (asked for)"
    if dev.type == "cuda":
        return dev, torch.bfloat16, True, "auto: CUDA -> bf16 weights, bf16 autocast"
    if dev.type == "cpu" and cpu_has_native_bf16():
        return dev, torch.float32, True, "auto: this CPU computes bf16 natively -> fp32 weights, bf16 autocast"
    return dev, torch.float32, False, f"auto: {dev.type} without native bf16 -> float32"


# ---- batched greedy decoding with a preallocated KV cache ----

def token_batches(lengths, max_new_tokens, batch_tokens):
    """Prompt indices in batches, shortest prompts first, so that a batch pads little: B prompts whose longest
    has P tokens fill B * (P + max_new_tokens) <= batch_tokens slots of the KV cache (what _generate_batch
    allocates, padding included). A prompt over the budget alone still gets a batch of its own."""
    batches = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        # sorted ascending: the newcomer is the batch's longest prompt, so it sets every row's cache length
        if batches and (len(batches[-1]) + 1) * (lengths[i] + max_new_tokens) <= batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@torch.no_grad()
def generate(model: Llama, prompts, max_new_tokens, eos_id, batch_size=16, progress=False, autocast=False,
             batch_tokens=0, eos_every=8):
    """Greedy-decode each prompt (a list of token ids) and return only its new tokens, without the EOS.
    autocast=True runs under bf16 autocast with a bf16 KV cache (resolve_device says when).

    Prompts are sorted by length and run in batches of batch_size prompts, or, with batch_tokens, of a KV
    cache of at most batch_tokens slots (token_batches). Inside a batch they are left-padded; each row's
    positions start at 0 at its first real token and padding is masked out of attention, so every row
    gets exactly the tokens that decoding it alone, step by step and without a cache, would give.
    A row whose output has max_new_tokens tokens was cut off by the limit (it never produced EOS).
    Whether every row has ended is asked every eos_every steps only: the question waits for the GPU (a host
    sync), and the steps it lets run past the last EOS are discarded."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    batches = (token_batches([len(p) for p in prompts], max_new_tokens, batch_tokens) if batch_tokens else
               [order[i:i + batch_size] for i in range(0, len(order), batch_size)])
    out = [None] * len(prompts)
    for idx in tqdm(batches, desc="generate", disable=not progress):
        with torch.autocast(model.lm_head.weight.device.type, dtype=torch.bfloat16, enabled=autocast):
            for i, toks in zip(idx, _generate_batch(model, [prompts[i] for i in idx], max_new_tokens, eos_id,
                                                    eos_every)):
                out[i] = toks
    return out


def _generate_batch(model, prompts, max_new_tokens, eos_id, eos_every=8):
    device = model.lm_head.weight.device
    dtype = torch.bfloat16 if torch.is_autocast_enabled(device.type) else model.model.embed_tokens.weight.dtype
    B, P = len(prompts), max(len(p) for p in prompts)
    total = P + max_new_tokens
    if total > model.args.max_position_embeddings:
        raise ValueError(f"prompt of {P} tokens + {max_new_tokens} new tokens exceeds the model's "
                         f"max_position_embeddings {model.args.max_position_embeddings}")
    pad = torch.tensor([P - len(p) for p in prompts], device=device)
    tokens = torch.tensor([[0] * (P - len(p)) + list(p) for p in prompts], device=device)
    a = model.args
    for layer in model.model.layers:
        layer.self_attn.cache = KVCache(B, a.num_key_value_heads, total, a.head_dim, dtype, device)
    idx = torch.arange(total, device=device)
    # valid[b, k]: cache slot k holds a real token of row b. Pad queries may see themselves so that no
    # softmax row is empty (their outputs are never used).
    valid = idx[None, :] >= pad[:, None]
    positions = (idx[None, :] - pad[:, None]).clamp(min=0)
    was_training = model.training
    model.eval()
    try:
        causal = idx[:P, None] >= idx[None, :P]
        mask = causal & (valid[:, None, :P] | torch.eye(P, dtype=torch.bool, device=device))
        logits = model(tokens, positions=positions[:, :P], mask=mask[:, None], start=0, last_only=True)
        new, done = [], torch.zeros(B, dtype=torch.bool, device=device)
        for t in range(P, total):
            nxt = logits[:, -1].argmax(-1)
            new.append(nxt)
            done |= nxt == eos_id
            if t == total - 1 or (len(new) % eos_every == 0 and done.all()):  # done.all() waits for the device
                break
            mask = valid[:, None, None, : t + 1]
            logits = model(nxt[:, None], positions=positions[:, t:t + 1], mask=mask, start=t, last_only=True)
    finally:
        for layer in model.model.layers:
            layer.self_attn.cache = None
        model.train(was_training)
    rows = torch.stack(new, 1).tolist()
    return [r[:r.index(eos_id)] if eos_id in r else r for r in rows]
