"""Check --compile (Llama.compile_blocks) where it matters: inductor on CUDA, bf16 autocast, as train.py runs it.

    python tools/gpu_compile_check.py                 # CUDA if visible (bf16 weights, bf16 autocast), else CPU
    python tools/gpu_compile_check.py --device cpu    # the same check on the CPU (fp32; about a minute on 2 cores)

A small random Llama with LoRA on every linear layer trains --steps steps eagerly; at every step a compiled copy
holding the same weights computes the same micro-batch, so each difference is the compiler's, not a drift of two
trainings. Micro-batches vary in length every step and include one-sample ones; two validation batches run
without grad. Prints the graphs dynamo compiled (expected: 2, one with grad and one without), the largest
|loss difference| and gradient difference against eager, the first (compiling) and the median later step
times; exits 1 if a check fails. --backed-batch undoes the unbacked batch size (a one-sample micro-batch then
compiles a graph of its own): a fallback to compare against if the default fails on some torch or device.
"""
import argparse
import copy
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lora  # noqa: E402
import model as llama  # noqa: E402
from device import resolve_device  # noqa: E402

SIZES = {"tiny": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=128),
         "small": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
                       num_key_value_heads=4, vocab_size=2048)}
# (batch, length) per training step: a new length every step, one-sample micro-batches among them
TRAIN_SHAPES = [(4, 37), (4, 64), (1, 23), (3, 101), (2, 128), (4, 77), (1, 200), (4, 55), (2, 160), (3, 90)]
VAL_SHAPES = [(4, 50), (1, 33)]


def batch(shape, vocab, g, device):
    tokens = torch.randint(3, vocab, shape, generator=g)
    labels = tokens.clone()
    labels[:, : shape[1] // 2] = -100  # the loss on the second half: an answer after a prompt
    return tokens.to(device), labels.to(device)


def mean_loss(model, tokens, labels, autocast):
    with torch.autocast(tokens.device.type, dtype=torch.bfloat16, enabled=autocast):
        return model.loss(tokens, labels).float()


def forward_backward(model, tokens, labels, autocast):
    loss = mean_loss(model, tokens, labels, autocast)
    loss.backward()
    return loss


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto (CUDA if visible) | cpu | cuda[:N] (default auto)")
    ap.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16, as train.py's --dtype (default auto)")
    ap.add_argument("--backend", default="inductor", help="torch.compile backend (default inductor)")
    ap.add_argument("--size", default="small", choices=tuple(SIZES), help="model shape (default small)")
    ap.add_argument("--steps", type=int, default=len(TRAIN_SHAPES), help=f"training steps, at most "
                    f"{len(TRAIN_SHAPES)} (default {len(TRAIN_SHAPES)})")
    ap.add_argument("--grad-checkpointing", action="store_true", help="also recompute blocks in backward (off)")
    ap.add_argument("--backed-batch", action="store_true", help="do not mark the batch size unbacked (off)")
    a = ap.parse_args()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch sees no GPU; use --device cpu")
    device, dtype, autocast, why = resolve_device(a.device, a.dtype)
    if a.backed_batch:
        llama.mark_unbacked = lambda x, dim: None
    import torch._dynamo as dynamo
    from torch._dynamo.testing import CompileCounterWithBackend
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"{name}, torch {torch.__version__}, backend {a.backend}, size {a.size}; precision: {why}")

    torch.manual_seed(0)
    eager = llama.Llama(llama.ModelArgs(**SIZES[a.size], max_position_embeddings=512))
    for p in eager.parameters():
        torch.nn.init.normal_(p, std=0.02) if p.dim() == 2 else torch.nn.init.ones_(p)
    eager.to(device=device, dtype=dtype)
    eager.model.rotary_emb = llama.RotaryEmbedding(eager.args, device=device)  # inv_freq stays fp32
    lora.apply_lora(eager, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), r=8, alpha=16)
    with torch.no_grad():
        for k, p in eager.named_parameters():
            if "lora_B" in k:
                p.normal_(0, 0.02)  # B = 0 would leave lora_A without gradient at the first step
    eager.gradient_checkpointing = a.grad_checkpointing
    compiled = copy.deepcopy(eager)
    torch._dynamo.reset()
    counter = CompileCounterWithBackend(a.backend)
    compiled.compile_blocks(backend=counter)
    params = {k: p for k, p in eager.named_parameters() if p.requires_grad}
    twins = {k: p for k, p in compiled.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(params.values(), lr=1e-3)
    eager.train(), compiled.train()
    g = torch.Generator().manual_seed(0)
    vocab = SIZES[a.size]["vocab_size"]
    rows, times = [], {"eager": [], "compiled": []}
    for step, shape in enumerate(TRAIN_SHAPES[:a.steps]):
        with torch.no_grad():
            for k, p in params.items():
                twins[k].copy_(p)  # the compiled copy computes on exactly the eager weights
        tokens, labels = batch(shape, vocab, g, device)
        losses, grads = [], []
        for tag, m in (("eager", eager), ("compiled", compiled)):
            m.zero_grad(set_to_none=True)
            loss, dt = timed(lambda: forward_backward(m, tokens, labels, autocast), device)
            times[tag].append(dt)
            losses.append(loss.item())
            grads.append({k: p.grad for k, p in m.named_parameters() if p.requires_grad})
        gdiff = max(((grads[0][k] - grads[1][k]).abs().max() / grads[0][k].abs().max().clamp_min(1e-12)).item()
                    for k in grads[0])
        rows.append((abs(losses[0] - losses[1]), gdiff))
        print(f"step {step + 1:2d}  batch {shape[0]} x {shape[1]:3d}  loss {losses[0]:.5f}  |diff| "
              f"{rows[-1][0]:.2e}  max grad diff / max |grad| {gdiff:.2e}  graphs so far {counter.frame_count}  "
              f"eager {times['eager'][-1] * 1e3:.0f} ms  compiled {times['compiled'][-1] * 1e3:.0f} ms", flush=True)
        opt.step()
    train_graphs = counter.frame_count
    eager.eval(), compiled.eval()
    val = []
    with torch.no_grad():
        for k, p in params.items():
            twins[k].copy_(p)
        for shape in VAL_SHAPES:
            tokens, labels = batch(shape, vocab, g, device)
            x, y = (mean_loss(m, tokens, labels, autocast).item() for m in (eager, compiled))
            val.append(abs(x - y))
    loss_diff, grad_diff = max(r[0] for r in rows), max(r[1] for r in rows)
    # Heuristic bounds: bf16 keeps 3 significant digits and fused kernels round at other places than eager.
    loss_tol, grad_tol = (2e-2, 5e-2) if autocast else (1e-5, 1e-4)
    expected = 2  # with grad, without; a backed batch size adds a graph for one-sample batches in each mode
    if a.backed_batch:
        expected += any(b == 1 for b, _ in TRAIN_SHAPES[:a.steps]) + any(b == 1 for b, _ in VAL_SHAPES)
    later = lambda tag: statistics.median(times[tag][1:]) * 1e3 if len(times[tag]) > 1 else float("nan")
    print(f"\ngraphs compiled: {counter.frame_count} ({train_graphs} with grad, {counter.frame_count - train_graphs} "
          f"without); expected <= {expected}")
    print(f"max |loss diff| training {loss_diff:.2e}, validation {max(val):.2e}; max grad diff / max |grad| "
          f"{grad_diff:.2e}; bounds {loss_tol:.0e} (loss), {grad_tol:.0e} (grads)")
    print(f"first step (compiles): eager {times['eager'][0]:.2f} s, compiled {times['compiled'][0]:.2f} s; "
          f"median later step: eager {later('eager'):.1f} ms, compiled {later('compiled'):.1f} ms "
          "(new shapes every step; tiny model: not a speed benchmark)")
    ok = counter.frame_count <= expected and max(loss_diff, *val) <= loss_tol and grad_diff <= grad_tol
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
