"""The memory plan of a training run (and the token budget of an evaluation batch), from config.json alone.

    args = ModelArgs.from_config(json.load(open("Llama-2-7b-chat-hf/config.json")))
    p = estimate(args, Settings(micro_batch=4, cutoff_len=1024, weight_dtype=torch.bfloat16, autocast=True))
    p.total(checkpointing=False) / 2**30    # GiB: does it fit the card?
    print(p.table(memory=24 * 2**30))

No weights are read. Each term below follows what model.py and lora.py actually ask autograd to keep: the
walk in `block_saved` goes through Block.forward op by op and records every tensor an op saves for its
backward, by name, so that one tensor saved by two ops counts once (autograd keeps one storage). Parameters
are never counted as saved (they are resident anyway); a bf16 *copy* of a weight made by autocast is.
Checked against torch.autograd.graph.saved_tensors_hooks and the peak of the CPU allocator on small shapes
(tests/test_plan.py, tools/plan_table.py) and, for the 7B shape, by tools/gpu_memcheck.py on a GPU.

Assumptions, in one place: attention runs in a fused SDPA kernel (flash / memory-efficient / CPU flash:
O(T) memory, no T x T matrix); the CUDA reserve is a margin, not derived; the answer-token bound is
`answer_tokens_bound`'s.
"""
from dataclasses import dataclass

import torch

from device import cpu_has_native_bf16
from model import ModelArgs

GiB = 2**30
CUDA_RESERVE = 1 * GiB  # CUDA context, cuBLAS workspaces, caching-allocator fragmentation: a margin, not derived
STAGE1_ANSWER_TOKENS = 16  # stage 1's target is one word ("Sufficient" / "Insufficient") + the end of turn


@dataclass
class Settings:
    micro_batch: int = 4
    cutoff_len: int = 1024  # every sample padded to this length: the worst micro-batch
    weight_dtype: torch.dtype = torch.bfloat16  # of the frozen base (train.py: bf16 on CUDA, fp32 on CPU)
    autocast: bool = True  # bf16 autocast: matmul outputs are bf16 whatever the weights are
    lora_targets: tuple = ("q_proj", "v_proj")  # empty = full-parameter training (stage 0)
    lora_r: int = 8
    answer_tokens: int = 0  # positions per micro-batch that go through lm_head (model.Llama.loss); 0 = all
    device: str = "cuda"  # cuda | cpu: cuda adds CUDA_RESERVE

    @property
    def full(self):
        return not self.lora_targets


def answer_tokens_bound(data, micro_batch, cutoff_len):
    """Upper bound on the labelled positions of one micro-batch (only they reach lm_head): stage 1's
    cognition targets are one word + end of turn (STAGE1_ANSWER_TOKENS per sample); every other kind (stage 0's
    corpus, stage 2's answers with their CHECKING section, QA) is bounded by every position of the sample."""
    per_sample = STAGE1_ANSWER_TOKENS if data == "cognition" else cutoff_len - 1
    return micro_batch * min(per_sample, cutoff_len - 1)


def nbytes(dtype):
    return torch.finfo(dtype).bits // 8


def block_saved(args: ModelArgs, s: Settings, first: bool):
    """{name: (bytes per token, bytes per block)} that autograd keeps from one Block.forward until backward.
    first=True is block 0, whose input (the frozen embedding's output) needs no gradient in a LoRA run."""
    h, inter, r = args.hidden_size, args.intermediate_size, s.lora_r
    qd, kvd = args.num_attention_heads * args.head_dim, args.num_key_value_heads * args.head_dim
    w = nbytes(s.weight_dtype)
    act = 2 if s.autocast else w  # dtype of a matmul's output: bf16 under autocast, else the weights'
    stream = w  # the residual stream: the embedding's dtype; bf16 outputs added to an fp32 stream stay fp32
    saved = {}

    def save(name, per_token, per_block=0):
        saved[name] = (per_token, per_block)

    def norm(name, x, x_grad):
        # RMSNorm.forward: xf = x.float() (x itself when the stream is fp32); pow(2) and `* rsqrt` save xf,
        # rsqrt saves its (B, T, 1) output. `weight * ...` saves the normalised tensor only if the weight
        # trains (stage 0): a frozen weight's multiply needs only the weight, for the input's gradient.
        if x_grad:
            save(x if stream == 4 else f"{name}.xf", 4 * h)
            save(f"{name}.rsqrt", 4)
        if s.full:
            save(f"{name}.normed", stream * h)
        return f"{name}.out", x_grad or s.full

    def linear(name, x, x_bytes, n_in, n_out, x_grad):
        kind = "full" if s.full else "lora" if name in s.lora_targets else "frozen"
        weight_copy = n_in * n_out * 2 if s.autocast and w != 2 else 0  # autocast's bf16 cast of an fp32 weight
        if x_grad or kind == "full":  # the input's gradient needs the weight: the parameter, or its bf16 copy
            save(f"{name}.weight.bf16", 0, weight_copy)
        if kind == "full":  # the weight's gradient needs the input, as F.linear saw it (a bf16 cast per consumer)
            save(f"{x}.bf16@{name}" if s.autocast and x_bytes != 2 else x, act * n_in if s.autocast else x_bytes * n_in)
        if kind == "lora":
            # LoRALinear: lora_A(x.to(fp32)). Under autocast that fp32 copy is cast back to bf16, a new tensor
            # per LoRA layer (q_proj and v_proj keep one each); in fp32, lora_A saves x itself, shared.
            if s.autocast:
                save(f"{name}.lora_in", 2 * n_in)
            else:
                save(x, 4 * n_in)
            save(f"{name}.lora_A.out", act * r)  # saved by lora_B for B's gradient
            if s.autocast:  # bf16 casts of A (only if x needs a gradient) and of B, kept for the backward
                save(f"{name}.lora_weights.bf16", 0, 2 * r * ((n_in if x_grad else 0) + n_out))
        return f"{name}.out", x_grad or kind != "frozen"

    x = "block.in"
    x_grad = not first or s.full  # stage 0 trains the embedding, so even block 0's input needs a gradient
    # Attention.forward
    xn, xn_grad = norm("input_layernorm", x, x_grad)
    _, q_grad = linear("q_proj", xn, stream, h, qd, xn_grad)
    _, k_grad = linear("k_proj", xn, stream, h, kvd, xn_grad)
    _, v_grad = linear("v_proj", xn, stream, h, kvd, xn_grad)
    # RoPE (q * cos + rotate_half(q) * sin) saves cos and sin: one pair shared by every block, counted outside.
    # SDPA saves q, k, v as it receives them (after repeat_interleave under GQA: n_heads heads each), its output,
    # and the fp32 log-sum-exp per head and position. Under autocast all four are bf16.
    attn_grad = q_grad or k_grad or v_grad
    if attn_grad:
        for t in ("q", "k", "v", "out"):
            save(f"sdpa.{t}", act * qd)
        save("sdpa.lse", 4 * args.num_attention_heads)
    # o_proj's input y.transpose(1, 2).reshape(B, T, -1) is a view of SDPA's output: q after RoPE keeps the
    # (B, T, heads, head_dim) layout of q_proj's output (elementwise ops keep strides) and SDPA's output follows q.
    y = "sdpa.out"
    _, o_grad = linear("o_proj", y, act, qd, h, attn_grad)
    mid_grad = x_grad or o_grad
    # MLP.forward: down_proj(silu(gate_proj(x)) * up_proj(x))
    xn, xn_grad = norm("post_attention_layernorm", "block.mid", mid_grad)
    _, g_grad = linear("gate_proj", xn, stream, h, inter, xn_grad)
    _, u_grad = linear("up_proj", xn, stream, h, inter, xn_grad)
    if g_grad:
        save("mlp.gate_out", act * inter)  # silu saves its input
        save("mlp.up_out", act * inter)  # `a * b` saves b when a needs a gradient ...
    if u_grad:
        save("mlp.silu_out", act * inter)  # ... and a when b does
    linear("down_proj", "mlp.prod", act, inter, h, g_grad or u_grad)
    return saved


def backward_working_set(args: ModelArgs, s: Settings):
    """Bytes per token of the gradients alive while one block runs backward, beyond what it saved: the
    residual's gradient (and the one being added to it), then the larger of the MLP's (the gradients of
    silu(g) * u, of silu(g) and of u: 3 x intermediate, less down_proj's saved input, freed by then when a LoRA
    or stage 0 kept it) and attention's (SDPA's grad of out, dq, dk, dv and an fp32 dq accumulator; under GQA
    dk, dv are summed back to the kv heads)."""
    act = 2 if s.autocast else nbytes(s.weight_dtype)
    qd, kvd = args.num_attention_heads * args.head_dim, args.num_key_value_heads * args.head_dim
    attn = (4 * act + 4) * qd + (2 * act * kvd if kvd != qd else 0)
    mlp = (2 if s.full or "down_proj" in s.lora_targets else 3) * act * args.intermediate_size
    return 2 * nbytes(s.weight_dtype) * args.hidden_size + max(mlp, attn)


class Plan:
    """Bytes per component of a training run's peak, for checkpointing off and on; the rows add up to it.
    saved_bytes is what autograd holds at the end of the forward without checkpointing (what
    saved_tensors_hooks see); step_bytes the peak of one micro-batch above the resident weights, gradients and
    optimizer state (as in the second micro-batch of an accumulating step; what an allocator's peak counter
    sees when those already exist)."""

    def __init__(self, args, settings, rows, saved_bytes, per_token_block):
        self.args, self.settings, self.rows = args, settings, rows  # rows: [(component, off, on, why)]
        self.saved_bytes, self.per_token_block = saved_bytes, per_token_block

    def get(self, component, checkpointing=False):
        return next(r[2 if checkpointing else 1] for r in self.rows if r[0] == component)

    def total(self, checkpointing):
        return sum(r[2 if checkpointing else 1] for r in self.rows)

    def step_bytes(self, checkpointing):
        return sum(self.get(name, checkpointing) for name in STEP_ROWS)

    def table(self, memory=None):
        lines = [f"{'component':38s} {'ckpt off':>8s} {'ckpt on':>8s}  (GiB)"]
        for name, off, on, why in self.rows:
            lines.append(f"{name:38s} {off / GiB:8.2f} {on / GiB:8.2f}  {why}")
        lines.append(f"{'total':38s} {self.total(False) / GiB:8.2f} {self.total(True) / GiB:8.2f}")
        if memory:
            fit = lambda c: "fits" if self.total(c) <= memory else "does not fit"
            lines.append(f"{'memory':38s} {memory / GiB:8.2f} {memory / GiB:8.2f}  off {fit(False)}, on {fit(True)}")
        return "\n".join(lines)


STEP_ROWS = ("autocast weight copies", "activations saved for backward", "loss / backward peak")


def estimate(args: ModelArgs, s: Settings) -> Plan:
    h, L, V = args.hidden_size, args.num_hidden_layers, args.vocab_size
    T = s.micro_batch * s.cutoff_len  # tokens per micro-batch
    n_ans = s.answer_tokens or s.micro_batch * (s.cutoff_len - 1)
    w = stream = nbytes(s.weight_dtype)
    qd, kvd = args.num_attention_heads * args.head_dim, args.num_key_value_heads * args.head_dim
    linears = {"q_proj": (h, qd), "k_proj": (h, kvd), "v_proj": (h, kvd), "o_proj": (qd, h),
               "gate_proj": (h, args.intermediate_size), "up_proj": (h, args.intermediate_size),
               "down_proj": (args.intermediate_size, h)}
    n = n_params(args)
    lora = 0 if s.full else L * sum(s.lora_r * (i + o) for name, (i, o) in linears.items() if name in s.lora_targets)
    head_lora = not s.full and "lm_head" in s.lora_targets  # the tiny preset's: one more LoRA, on the output layer
    lora += s.lora_r * (h + V) if head_lora else 0
    trained, tbytes = (n, w) if s.full else (lora, 4)  # LoRA A and B are fp32 (lora.py)

    def per_block(first):  # (bytes per token, bytes per block) of one block's saved tensors
        saved = block_saved(args, s, first)
        return sum(t for t, _ in saved.values()), sum(b for _, b in saved.values()), saved.get("block.in", (0, 0))[0]

    (tok0, const0, _), (tok1, const1, own_input) = per_block(True), per_block(False)
    # cos and sin, (1, 1, T, head_dim) each in the stream's dtype (positions broadcast over the batch), saved by
    # every block's RoPE: one pair.
    rope = 2 * s.cutoff_len * args.head_dim * stream
    # model.Llama.loss: x[keep] saves the boolean mask; the final norm saves xf (fp32) of the answer positions;
    # lm_head keeps only its weight (or, over fp32 weights under autocast, its bf16 copy); F.cross_entropy
    # saves the fp32 log-softmax, answer tokens x vocab.
    loss_saved = T + n_ans * (4 * h + 4 + 4 * V + 8)
    if head_lora:  # LoRALinear on lm_head: its input in the autocast dtype and A's output (answer positions only)
        loss_saved += n_ans * (stream * h + stream * s.lora_r)
    if s.full:  # stage 0 trains the final norm, lm_head (their inputs: normalised, and its bf16 cast under
        # autocast over fp32) and the embedding (its int64 token ids)
        loss_saved += n_ans * h * (stream + (2 if s.autocast and stream != 2 else 0)) + 8 * T
    head_copy = V * h * 2 if s.autocast and w != 2 else 0
    # Two moments bound the peak. At the loss, every block's saved tensors are still alive, plus the loss's own
    # and the gradients nll_loss writes and log_softmax's backward passes on (fp32, answer tokens x vocab each;
    # the forward's bf16 logits + fp32 copy are no larger). Later, inside one block's backward, the loss's
    # tensors are gone and backward_working_set is alive (with checkpointing, on top of that block's
    # recomputed saved tensors). The table's last activation row is the larger of the two.
    loss_phase, ws = loss_saved + n_ans * V * 8, T * backward_working_set(args, s)
    # A recomputed block's saved tensors, less its input when the norm saves that (fp32 stream): checkpoint
    # keeps it already. Its weights' bf16 copies exist then; lm_head's copy only until the loss's backward.
    recomputed = T * (tok1 - own_input)
    # Without checkpointing every block keeps its saved tensors until backward. With it (model.hidden wraps each
    # block in torch.utils.checkpoint) a block keeps only its input; backward recomputes one block at a time.
    saved_off, saved_on = T * (tok0 + (L - 1) * tok1), T * L * h * stream
    rows = [
        ("weights", n * w, n * w, f"{n / 1e9:.2f}B parameters, {str(s.weight_dtype)[6:]}"),
        ("LoRA params", lora * 4, lora * 4, f"fp32, r {s.lora_r} on {','.join(s.lora_targets)}" if lora else "none"),
        ("gradients", trained * tbytes, trained * tbytes, "one per trainable parameter"),
        ("AdamW state", 2 * trained * tbytes, 2 * trained * tbytes, "exp_avg + exp_avg_sq"),
        ("autocast weight copies", const0 + (L - 1) * const1 + head_copy, 0,
         "bf16 casts of fp32 weights, kept for backward (on: in the peak row)"),
        ("activations saved for backward", saved_off + rope, saved_on + rope,
         f"{T} tokens; off: {tok1 / 1024:.1f} KiB/token/block; on: {h * stream / 1024:.1f} (block inputs)"),
        ("loss / backward peak", max(loss_phase, ws), max(loss_phase + head_copy, recomputed + const1 + ws),
         f"the larger: loss {loss_phase / GiB:.2f} (<= {n_ans} answer tokens x vocab {V}), one block's backward "
         f"{ws / GiB:.2f} (on: + {(recomputed + const1) / GiB:.2f} recomputed)"),
    ]
    if s.device == "cuda":
        rows.append(("reserve", CUDA_RESERVE, CUDA_RESERVE, "CUDA context, allocator fragmentation: a margin"))
    return Plan(args, s, rows, saved_off + rope + loss_saved + const0 + (L - 1) * const1 + head_copy, tok1)


def available_memory(device) -> int:
    """Bytes free for a run: the CUDA device's free memory, or on CPU the machine's available RAM."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024


def choose_checkpointing(args, s: Settings, memory, mode="auto"):
    """(on, one line for the start of a run): an explicit on/off wins; auto turns checkpointing on only when
    the plan without it does not fit in `memory` bytes."""
    plan = estimate(args, s)
    off, on = plan.total(False) / GiB, plan.total(True) / GiB
    if mode in ("on", "off"):
        return mode == "on", f"{mode} (asked for; plan: off {off:.1f} GiB, on {on:.1f} GiB of {memory / GiB:.1f})"
    use = plan.total(False) > memory
    verdict = "fits" if not use else "does not fit" if plan.total(True) <= memory else \
        "neither fits: expect out-of-memory, use a smaller micro-batch or cutoff"
    return use, (f"auto -> {'on' if use else 'off'}: the plan without it needs {off:.1f} GiB, with it {on:.1f} GiB, "
                 f"of {memory / GiB:.1f} GiB ({verdict})")


def n_params(args: ModelArgs):
    h, inter = args.hidden_size, args.intermediate_size
    qd, kvd = args.num_attention_heads * args.head_dim, args.num_key_value_heads * args.head_dim
    block = 2 * h * qd + 2 * h * kvd + 3 * h * inter + 2 * h  # q, o; k, v; gate, up, down; two norms
    return args.num_hidden_layers * block + args.vocab_size * h * (1 if args.tie_word_embeddings else 2) + h


def eval_bytes(args: ModelArgs, dtype, autocast=None, prompt_len=0, device="cuda"):
    """(resident bytes, bytes per batch token) of generate() (model.py), a batch token being one of
    rows x (longest prompt + max_new_tokens): the KV cache is preallocated for the padded batch.
    autocast (None: dtype is bf16) makes the cache and the matmuls bf16; prompt_len bounds the padded prompt
    (0: the model's max_position_embeddings) for the attention mask's rows x P x P term."""
    autocast = dtype == torch.bfloat16 if autocast is None else autocast
    w, act = nbytes(dtype), 2 if autocast else nbytes(dtype)
    h, inter, P = args.hidden_size, args.intermediate_size, prompt_len or args.max_position_embeddings
    qd, kvd = args.num_attention_heads * args.head_dim, args.num_key_value_heads * args.head_dim
    # KVCache: k and v of every layer, kv_heads x head_dim per token each, in the autocast (or weight) dtype.
    kv = 2 * args.num_hidden_layers * kvd * act
    # The prompt's forward (no autograd, so nothing is kept between blocks): the residual stream, the next one
    # and the normalised input, then the larger of the MLP's silu(g), u and their product (g is freed first)
    # and attention's q, k, v, the RoPE temporaries, SDPA's output and its copy for o_proj; under GQA the
    # cache's k and v repeated to every head (also at each decoding step, over the whole cache, in one layer).
    gqa = 2 * qd if kvd != qd else 0
    # A CPU without native bf16 emulates bf16 matmuls through fp32 temporaries: the working tensors are counted
    # at 4 bytes there (a 2-core Xeon without AVX512-BF16 measured 10,490,600 bytes where 2 bytes gave 9,685,760).
    emulated = device == "cpu" and autocast and not cpu_has_native_bf16()
    work = (2 * w + w) * h + (4 if emulated else act) * max(3 * inter, 5 * qd + 2 * kvd + gqa)
    # generate()'s boolean masks (causal & (valid | eye), rows x P x P) and SDPA's additive float copy of it.
    mask = 6 * P
    return n_params(args) * w + (CUDA_RESERVE if device == "cuda" else 0), kv + work + mask


def eval_token_budget(args: ModelArgs, memory_bytes, dtype, autocast=None, prompt_len=0, device="cuda") -> int:
    """The most batch tokens, rows x (longest prompt + max_new_tokens), of one generate() batch that fit in
    memory_bytes beside the weights (see eval_bytes)."""
    resident, per_token = eval_bytes(args, dtype, autocast, prompt_len, device)
    return max(0, int((memory_bytes - resident) // per_token))
