"""Speed and memory of ours vs the reference (transformers LlamaForCausalLM + peft), measured in one run.

    python bench.py --workload real  # the project's own workloads on the tiny world (below), fp32 and bf16
    python bench.py                  # kernel level: random all-labelled batches, tiny and medium sizes
    python bench.py --cuda           # GPU: Llama-2-7B shape in bf16 (needs a CUDA device)

--workload real times what the pipeline runs, built by the project's own data builders from the tiny world
(data/tiny, written if missing) and the shipped base tiny/base (plus, by default on stage 1 in bf16 only, a
random medium-sized model, 8 layers of d 512 and vocab 32000, fed the same token sequences):
  stage1  train.run_micro_batch on micro-batches of 4 stage-1 samples (Cognition prompt, 1-3 token answer),
          LoRA r8 alpha 16 on q,v (the paper's), then AdamW; one new micro-batch per step
  stage2  the same on stage-2 samples (HotpotQA prompt ~800 tokens, ~100-200 token CHECKING answer)
  eval    --eval-prompts benchmark prompts (eval.model_prompts: benchmark and cognition, known and unknown)
          decoded greedily to 200 new tokens or EOS: ours generate() with eval's KV-cache budget (packed
          prefill, finished rows leave the batch); the reference transformers' generate, left-padded, batches of
          --gen-batch prompts sorted by length
The reference is used as a LLaMA-Factory user gets it: right-padded micro-batches with an attention mask and
the loss from labels= (full logits), peft's LoRA. Each dtype row runs both sides in it: fp32, or fp32 weights
under bf16 autocast (what resolve_device picks on a CPU with native bf16). A worker also reports the first
micro-batch's loss (LoRA B is zero, so both sides compute the base model's loss) or its decoded tokens, and the
table says whether ours and the reference agree. Workers run 1 torch thread each (--threads): on 2 cores
shared with other jobs, 2 OpenMP threads per process oversubscribe them and one run's time varied up to 10x.

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


def random_checkpoint(size, tmp):
    """A seeded random model of SIZES[size] saved under tmp (both sides then load the same file)."""
    from model import Llama, ModelArgs
    torch.manual_seed(0)
    model = Llama(ModelArgs(**SIZES[size], max_position_embeddings=4096))
    for p in model.parameters():
        if p.dim() == 2:
            torch.nn.init.normal_(p, std=0.02)
    ckpt = os.path.join(tmp, size)
    model.save_pretrained(ckpt)
    return ckpt


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
            from generate import generate
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


# ---- real workloads (--workload real) ----

EVAL_BATCH_TOKENS = 16384  # eval.py's KV-cache budget per batch on the CPU (DEFAULT_BATCH_TOKENS)


def build_workloads(n_train, n_prompts, out_file):
    """Token ids of the real workloads, built by the project's data builders on the tiny world: the first
    n_train stage-1 and stage-2 training samples in train.py's shuffled order, and n_prompts evaluation prompts.
    Written to out_file (JSON), so that neither side's worker loads a tokenizer."""
    import data
    import eval as ev
    import tinyworld
    root = os.path.dirname(os.path.abspath(__file__))
    world, base = os.path.join(root, tinyworld.DATA), os.path.join(root, tinyworld.BASE)
    if not os.path.exists(os.path.join(world, "ASQA.json")):
        tinyworld.write(world)
    tok = data.Tokenizer(base)
    template = data.chat_template(base)
    rows = data.build_benchmark(os.path.join(world, "ASQA.json"))
    hotpot = os.path.join(world, "hotpot_train_v1.1.json")
    work = {"pad_id": tok.pad_id, "eos_id": template.stop_id(tok)}
    for name, records in (("stage1", data.stage1_records(rows)), ("stage2", data.stage2_records(hotpot))):
        samples, _ = data.tokenize_records(tok, records, 1024, template)
        order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(0)).tolist()
        work[name] = [samples[i] for i in order[:n_train]]
    test = [r for r in rows if r["split"] == "test"]
    work["eval"] = [p[3] for p in ev.model_prompts(tok, test, [], False, template)][:n_prompts]
    with open(out_file, "w") as f:
        json.dump(work, f)
    return work


def real_worker(a):
    """One side, one workload, one dtype, in this process: prints RESULT {...}."""
    device = torch.device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    autocast = a.dtype == "bf16"
    with open(a.work) as f:
        work = json.load(f)
    pad_id, eos_id = work["pad_id"], work["eos_id"]
    model = build(a.impl, a.ckpt, None, device, torch.float32)
    out = {}
    if a.task in ("stage1", "stage2"):
        samples = work[a.task]
        n_batches = a.warmup + a.steps
        batches = [samples[i * a.batch:(i + 1) * a.batch] for i in range(n_batches)]
        if any(len(b) < a.batch for b in batches):
            sys.exit(f"error: {a.task}: {len(samples)} samples, fewer than {n_batches} micro-batches of {a.batch}")
        torch.manual_seed(0)
        if a.impl == "ours":
            import lora
            from train import n_answer_tokens, run_micro_batch
            lora.apply_lora(model, ("q_proj", "v_proj"), r=8, alpha=16)
            model.train()

            def step(b):
                n = sum(n_answer_tokens(s) for s in b)
                return run_micro_batch(model, b, pad_id, device, autocast, n) / n  # backward inside
        else:
            import data
            from peft import LoraConfig, get_peft_model
            model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                     target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
            model.train()

            def step(b):  # LLaMA-Factory's way: padded batch, attention mask, labels= (full logits, mean loss)
                ids, labels = (torch.from_numpy(x).to(device) for x in data.collate(b, pad_id))
                mask = (torch.arange(ids.shape[1])[None] < torch.tensor([len(s[0]) for s in b])[:, None]).long()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    loss = model(input_ids=ids, attention_mask=mask.to(device), labels=labels).loss
                loss.backward()
                return loss.detach().float()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)
        losses, times = [], []
        for i, b in enumerate(batches):
            t = time.perf_counter()
            losses.append(step(b).item())
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i >= a.warmup:
                times.append(time.perf_counter() - t)
        timed = batches[a.warmup:]
        out["samples_per_s"] = sum(len(b) for b in timed) / sum(times)
        out["answer_tokens_per_s"] = sum(sum(y != -100 for y in s[1][1:]) for b in timed for s in b) / sum(times)
        out["first_loss"] = losses[0]
    else:
        prompts = work["eval"]
        model.eval()
        if a.impl == "ours":
            from generate import generate
            run = lambda: generate(model, prompts, a.new_tokens, eos_id, batch_tokens=EVAL_BATCH_TOKENS,
                                   autocast=autocast)
        else:
            def run():
                order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
                res = [None] * len(prompts)
                for k in range(0, len(order), a.gen_batch):
                    idx = order[k:k + a.gen_batch]
                    P = max(len(prompts[i]) for i in idx)
                    ids = torch.tensor([[pad_id] * (P - len(prompts[i])) + prompts[i] for i in idx], device=device)
                    mask = torch.tensor([[0] * (P - len(prompts[i])) + [1] * len(prompts[i]) for i in idx],
                                        device=device)
                    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                        gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=a.new_tokens,
                                             do_sample=False, eos_token_id=eos_id, pad_token_id=pad_id)
                    for i, row in zip(idx, gen[:, P:].tolist()):
                        res[i] = row[:row.index(eos_id)] if eos_id in row else row
                return res
        times = []
        for i in range(a.warmup + a.steps):
            t = time.perf_counter()
            outs = run()
            if i >= a.warmup:
                times.append(time.perf_counter() - t)
        out["samples_per_s"] = len(prompts) * len(times) / sum(times)
        out["answer_tokens_per_s"] = sum(len(o) for o in outs) * len(times) / sum(times)
        out["outputs"] = outs
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["threads"] = torch.get_num_threads()
    print("RESULT " + json.dumps(out))


def real_compare(args, task, size, dtype, ckpt, work):
    """ours and the reference alternately, args.repeats times each, each run a fresh subprocess."""
    steps, warmup = (args.eval_steps, args.eval_warmup) if task == "eval" else (args.steps, args.warmup)
    cmd = [sys.executable, __file__, "--worker", "--workload", "real", "--task", task, "--ckpt", ckpt,
           "--dtype", dtype, "--work", work, "--device", args.device, "--steps", str(steps), "--warmup",
           str(warmup), "--batch", str(args.batch), "--gen-batch", str(args.gen_batch),
           "--new-tokens", str(args.new_tokens), "--threads", str(args.threads)]
    runs = {"ours": [], "reference": []}
    for r in range(args.repeats):
        for impl in (("ours", "reference") if r % 2 == 0 else ("reference", "ours")):
            res = subprocess.run(cmd + ["--impl", impl], capture_output=True, text=True)
            line = [l for l in res.stdout.splitlines() if l.startswith("RESULT ")]
            runs[impl].append(json.loads(line[0][7:]) if not res.returncode and line else
                              {"error": (res.stderr.strip().splitlines() or ["failed"])[-1]})
    row = {"task": task, "size": size, "dtype": dtype}
    for impl, rs in runs.items():
        row[impl] = summarize(rs)
    o, r = row["ours"], row["reference"]
    if "error" not in o and "error" not in r:
        row["speed_ratio"] = o["samples_per_s"] / r["samples_per_s"]
        row["rss_ratio"] = o["peak_rss_mb"] / r["peak_rss_mb"]
        if task == "eval":
            a, b = runs["ours"][0]["outputs"], runs["reference"][0]["outputs"]
            row["same_outputs"] = sum(x == y for x, y in zip(a, b)) / len(a)
        else:
            row["first_loss_diff"] = abs(o["first_loss"] - r["first_loss"])
    print(json.dumps({k: v for k, v in row.items()}), flush=True)
    return row


def summarize(runs):
    """Medians, min and max over the runs of every number a worker reported; the runs themselves."""
    ok = [x for x in runs if "error" not in x]
    if not ok:
        return {"error": runs[0]["error"]}
    keys = [k for k, v in ok[0].items() if isinstance(v, (int, float))]
    out = {k: statistics.median(x[k] for x in ok) for k in keys}
    out.update({k + "_min": min(x[k] for x in ok) for k in keys}, **{k + "_max": max(x[k] for x in ok) for k in keys})
    out["runs"] = [{k: x[k] for k in keys} for x in ok]
    out["failed_runs"] = len(runs) - len(ok)
    return out


def fmt_real_row(r):
    def cell(impl):
        x = r[impl]
        if "error" in x:
            return f"error: {x['error'][:60]}", "-", "-"
        return (f"{x['samples_per_s']:.2f} ({x['samples_per_s_min']:.2f}-{x['samples_per_s_max']:.2f})",
                f"{x['answer_tokens_per_s']:.0f}", f"{x['peak_rss_mb']:.0f}")
    (os_, ot, om), (rs, rt, rm) = cell("ours"), cell("reference")
    ratio = f"**{r['speed_ratio']:.2f}x**" if "speed_ratio" in r else "-"
    check = (f"{100 * r['same_outputs']:.0f}% same outputs" if "same_outputs" in r else
             f"first loss diff {r['first_loss_diff']:.1e}" if "first_loss_diff" in r else "-")
    return f"| {r['task']} | {r['size']} | {r['dtype']} | {os_} | {ot} | {om} | {rs} | {rt} | {rm} | {ratio} | {check} |"


REAL_HEADER = ["| workload | size | dtype | ours samples/s (min-max) | ours answer tok/s | ours peak RSS MB | "
               "ref samples/s (min-max) | ref answer tok/s | ref peak RSS MB | ours/ref | check |",
               "|---|---|---|---|---|---|---|---|---|---|---|"]


def machine_info():
    name = ""
    try:
        with open("/proc/cpuinfo") as f:
            name = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    import transformers
    import peft
    return {"cpu": name, "cores": os.cpu_count(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__,
            "native_bf16": __import__("model").cpu_has_native_bf16()}


def real_main(args):
    """--workload real: every task x size x dtype, both sides; writes args.out."""
    import tinyworld
    t0 = time.time()
    args.out = os.path.abspath(args.out)
    os.chdir(os.path.dirname(os.path.abspath(__file__)))  # tiny/base and data/tiny are the repository's
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = os.path.join(tmp, "workloads.json")
        n_train = args.batch * (args.warmup + args.steps)
        w = build_workloads(n_train, args.eval_prompts, work)
        desc = {k: {"samples": len(w[k]), "tokens": [len(s[0]) for s in w[k]],
                    "answer_tokens": [sum(y != -100 for y in s[1][1:]) for s in w[k]]} for k in ("stage1", "stage2")}
        desc["eval"] = {"prompts": len(w["eval"]), "tokens": [len(p) for p in w["eval"]]}
        for spec in args.sizes.split(","):  # a size may name its own workloads and dtypes: medium:stage1:bf16
            parts = spec.split(":")
            size = parts[0]
            tasks = parts[1] if len(parts) > 1 else args.tasks.replace(",", "+")
            dtypes = parts[2] if len(parts) > 2 else args.dtypes.replace(",", "+")
            ckpt = tinyworld.BASE
            if size != "tiny":
                ckpt = random_checkpoint(size, tmp)
            for task in tasks.split("+"):
                for dtype in dtypes.split("+"):
                    rows.append(real_compare(args, task, size, dtype, ckpt, work))
    info = machine_info()
    note = (f"{info['cpu']}, {info['cores']} cores; torch {info['torch']}, transformers {info['transformers']}, "
            f"peft {info['peft']}; {args.threads or 'default'} torch thread(s) per worker; medians of {args.repeats} "
            "alternating subprocesses per side")
    print(f"\n{note}\n")
    print("\n".join(REAL_HEADER + [fmt_real_row(r) for r in rows]))
    with open(args.out, "w") as f:
        json.dump({"machine": info, "command": " ".join(["python3"] + sys.argv), "date": time.strftime(
            "%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": round(time.time() - t0), "args": vars(args),
                   "workloads": desc, "rows": rows}, f, indent=1)


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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cuda", action="store_true", help="the GPU suite (Llama-2-7B shape, bf16)")
    ap.add_argument("--sizes", default="tiny,medium", help="CPU sizes; with --workload real a size may name its "
                    "workloads and dtypes, + between them: tiny,medium:stage1:bf16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--gen-batch", type=int, default=16)
    ap.add_argument("--gen-prompt", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--out", default="bench.json")
    ap.add_argument("--workload", choices=("random", "real"), default="random",
                    help="random: kernel-level batches (default); real: the pipeline's own workloads (see above)")
    ap.add_argument("--tasks", default="stage1,stage2,eval", help="--workload real: which workloads")
    ap.add_argument("--dtypes", default="fp32,bf16", help="--workload real: fp32 and/or bf16 (bf16 autocast)")
    ap.add_argument("--eval-prompts", type=int, default=32, help="--workload real: evaluation prompts")
    ap.add_argument("--eval-steps", type=int, default=2, help="--workload real: timed passes over the prompts")
    ap.add_argument("--eval-warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1,
                    help="--workload real: torch threads per worker (0: torch's default). 1 by default: on 2 cores "
                         "shared with other jobs, 2 threads per process oversubscribe them and a run's time varies "
                         "up to 10x")
    # worker-only flags
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    ap.add_argument("--task", help=argparse.SUPPRESS)
    ap.add_argument("--size", help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", default="", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    ap.add_argument("--grad-checkpointing", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="fp32", help=argparse.SUPPRESS)
    ap.add_argument("--work", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return real_worker(args) if args.workload == "real" else worker(args)
    if args.workload == "real":
        if args.cuda:
            sys.exit("error: --workload real is the CPU suite; drop --cuda")
        if args.new_tokens == 64:  # the random mode's default; eval decodes 200 (eval.py --max-new-tokens)
            args.new_tokens = 200
        if args.gen_batch == 16:
            args.gen_batch = 32
        if args.sizes == "tiny,medium":  # the medium size on stage 1 in bf16 only: ~12 minutes in all on 2 cores
            args.sizes = "tiny,medium:stage1:bf16"
        return real_main(args)
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
        with tempfile.TemporaryDirectory() as tmp:
            for size in args.sizes.split(","):
                ckpt = random_checkpoint(size, tmp)
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
