"""Speed and memory of ours vs the reference (transformers LlamaForCausalLM + peft), measured in one run.

    python bench.py                  # CPU: tiny-world and medium sizes, LoRA training step + batched generation
    python bench.py --cuda           # GPU: Llama-2-7B shape in bf16 (needs a CUDA device)

Each measurement runs in a fresh subprocess (so peak memory is its own), ours and the reference alternate
--repeats times, and the table reports medians and ratios (ours / reference, >1 means ours is faster).
Same weights and same batches on both sides (CPU: one saved checkpoint; GPU: seeded random init).

Training FLOPs for MFU, LoRA-correct: the frozen weights need no weight gradients, so a token costs
about 2N (forward) + 2N (activation gradients) = 4N for the N matmul parameters, plus attention
12 * layers * seq * hidden (QK^T and AV: 4*seq*hidden forward, twice that backward; causal not halved).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

SIZES = {
    "tiny": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=2048),
    "medium": dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8,
                   num_key_value_heads=8, vocab_size=32000),
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=32, vocab_size=32000),
}
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "4090": 165e12}


def matmul_params(c):
    kv = c["hidden_size"] // c["num_attention_heads"] * c["num_key_value_heads"]
    per_layer = 2 * c["hidden_size"] ** 2 + 2 * c["hidden_size"] * kv + 3 * c["hidden_size"] * c["intermediate_size"]
    return c["num_hidden_layers"] * per_layer + c["hidden_size"] * c["vocab_size"]


def train_flops_per_token(c, seq):
    return 4 * matmul_params(c) + 12 * c["num_hidden_layers"] * seq * c["hidden_size"]


# ---- workers: one implementation, one task, in this process ----

def build(impl, ckpt, size, device, dtype):
    if impl == "ours":
        from model import Llama, ModelArgs, RotaryEmbedding
        if ckpt:
            return Llama.from_pretrained(ckpt, device=device, dtype=dtype)
        # gpt-fast's way: shapes on the meta device, cast there (free), then memory allocated once, in `dtype`
        # on `device`: a 7B model never exists in fp32 (27 GB) on the GPU.
        with torch.device("meta"):
            model = Llama(ModelArgs(**SIZES[size], max_position_embeddings=4096)).to(dtype)
        model.to_empty(device=device)
        torch.manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                torch.nn.init.normal_(p, std=0.02) if p.dim() == 2 else torch.nn.init.ones_(p)
        model.model.rotary_emb = RotaryEmbedding(model.args, device=device)  # inv_freq in fp32, not on meta
        return model
    from transformers import LlamaConfig, LlamaForCausalLM
    if ckpt:
        return LlamaForCausalLM.from_pretrained(ckpt, dtype=dtype).to(device)
    torch.manual_seed(0)
    with torch.device(device):
        return LlamaForCausalLM(LlamaConfig(**SIZES[size], max_position_embeddings=4096)).to(dtype)


def worker(a):
    device = torch.device(a.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = build(a.impl, a.ckpt, a.size, device, dtype)
    g = torch.Generator().manual_seed(0)
    vocab = SIZES[a.size]["vocab_size"]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if a.task == "train":
        ids = torch.randint(3, vocab, (a.batch, a.seq), generator=g).to(device)
        labels = ids.clone()
        labels[:, : a.seq // 2] = -100  # the loss on the second half: an answer after a prompt
        if a.impl == "ours":
            import lora
            lora.apply_lora(model, ("q_proj", "v_proj"), r=8, alpha=16)
            model.gradient_checkpointing = a.grad_checkpointing
            if a.compile:
                model.compile_blocks()
            step_loss = lambda: model.loss(ids, labels)
        else:
            from peft import LoraConfig, get_peft_model
            if a.grad_checkpointing:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
                model.enable_input_require_grads()
            model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                     target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
            if a.compile:
                for layer in model.base_model.model.model.layers:
                    layer.compile()
            step_loss = lambda: model(input_ids=ids, labels=labels).loss
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = step_loss()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        tokens = a.batch * a.seq
    else:
        lengths = torch.randint(a.seq // 4, a.seq + 1, (a.batch,), generator=g).tolist()
        prompts = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]
        model.eval()
        if a.impl == "ours":
            from model import generate
            step = lambda: generate(model, prompts, a.new_tokens, eos_id=-1, batch_size=a.batch)
        else:
            P = max(lengths)
            ids = torch.tensor([[0] * (P - len(p)) + p for p in prompts], device=device)
            mask = torch.tensor([[0] * (P - len(p)) + [1] * len(p) for p in prompts], device=device)

            def step():
                with torch.no_grad():
                    model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=a.new_tokens,
                                   min_new_tokens=a.new_tokens, do_sample=False, pad_token_id=0)
        tokens = a.batch * a.new_tokens
    for _ in range(a.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(a.steps):
        sync()
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    out = {"tokens_per_s": tokens / statistics.median(times),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(out))


# ---- the driver: alternate implementations in subprocesses, report medians ----

def measure(args, impl, task, size, ckpt, extra=()):
    cmd = [sys.executable, __file__, "--worker", "--impl", impl, "--task", task, "--size", size,
           "--ckpt", ckpt or "", "--device", args.device, "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--batch", str(args.batch if task == "train" else args.gen_batch),
           "--seq", str(args.seq if task == "train" else args.gen_prompt), "--new-tokens", str(args.new_tokens), *extra]
    res = subprocess.run(cmd, capture_output=True, text=True)
    line = [l for l in res.stdout.splitlines() if l.startswith("RESULT ")]
    if res.returncode or not line:
        return {"error": (res.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(line[0][7:])


def compare(args, task, size, ckpt, extra=()):
    runs = {"ours": [], "reference": []}
    for r in range(args.repeats):
        for impl in (("ours", "reference") if r % 2 == 0 else ("reference", "ours")):
            runs[impl].append(measure(args, impl, task, size, ckpt, extra))
    row = {"task": task, "size": size, "options": " ".join(extra) or "-"}
    for impl, rs in runs.items():
        ok = [x for x in rs if "error" not in x]
        if not ok:
            row[impl] = {"error": rs[0]["error"]}
            continue
        row[impl] = {k: statistics.median(x[k] for x in ok) for k in ok[0]}
    if "tokens_per_s" in row["ours"] and "tokens_per_s" in row["reference"]:
        row["speed_ratio"] = row["ours"]["tokens_per_s"] / row["reference"]["tokens_per_s"]
    if task == "train" and args.device == "cuda":
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        for impl in ("ours", "reference"):
            if peak and "tokens_per_s" in row[impl]:
                row[impl]["mfu"] = row[impl]["tokens_per_s"] * train_flops_per_token(SIZES[size], args.seq) / peak
    print(json.dumps(row), flush=True)
    return row


def fmt_row(r):
    def cell(impl):
        x = r[impl]
        if "error" in x:
            return f"error: {x['error'][:40]}"
        mem = f"{x['peak_cuda_mb']:.0f} MB GPU" if "peak_cuda_mb" in x else f"{x['peak_rss_mb']:.0f} MB RSS"
        mfu = f", MFU {100 * x['mfu']:.1f}%" if "mfu" in x else ""
        return f"{x['tokens_per_s']:.0f} tok/s, {mem}{mfu}"
    ratio = f"{r['speed_ratio']:.2f}x" if "speed_ratio" in r else "-"
    return f"| {r['task']} | {r['size']} | {r['options']} | {cell('ours')} | {cell('reference')} | {ratio} |"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cuda", action="store_true", help="the GPU suite (Llama-2-7B shape, bf16)")
    ap.add_argument("--sizes", default="tiny,medium", help="CPU sizes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--gen-batch", type=int, default=16)
    ap.add_argument("--gen-prompt", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--out", default="bench.json")
    # worker-only flags
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    ap.add_argument("--task", help=argparse.SUPPRESS)
    ap.add_argument("--size", help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", default="", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    ap.add_argument("--grad-checkpointing", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    rows = []
    machine = f"{os.cpu_count()} CPU cores, torch {torch.__version__}"
    if args.cuda:
        if not torch.cuda.is_available():
            sys.exit("error: --cuda needs a CUDA device; run without --cuda for the CPU suite")
        args.device, args.seq = "cuda", (args.seq if args.seq != 256 else 1024)
        machine = f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
        for extra in ((), ("--grad-checkpointing",), ("--compile",), ("--grad-checkpointing", "--compile")):
            rows.append(compare(args, "train", "llama2-7b", None, extra))
        rows.append(compare(args, "generate", "llama2-7b", None))
    else:
        from model import Llama, ModelArgs
        with tempfile.TemporaryDirectory() as tmp:
            for size in args.sizes.split(","):
                torch.manual_seed(0)
                model = Llama(ModelArgs(**SIZES[size], max_position_embeddings=4096))
                for p in model.parameters():
                    if p.dim() == 2:
                        torch.nn.init.normal_(p, std=0.02)
                ckpt = os.path.join(tmp, size)
                model.save_pretrained(ckpt)
                del model
                rows.append(compare(args, "train", size, ckpt))
                rows.append(compare(args, "generate", size, ckpt))
    table = ["| task | size | options | ours | transformers + peft | speed ours/ref |", "|---|---|---|---|---|---|"]
    table += [fmt_row(r) for r in rows]
    print(f"\n{machine}; train: LoRA r8 q,v, batch {args.batch} x seq {args.seq}; generate: {args.gen_batch} "
          f"ragged prompts <= {args.gen_prompt} tokens, {args.new_tokens} new tokens; medians of {args.repeats}\n")
    print("\n".join(table))
    with open(args.out, "w") as f:
        json.dump({"machine": machine, "args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
