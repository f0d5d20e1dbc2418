"""plan.py's estimates against a real run: training micro-batches and one eval batch, measured vs estimated.

    python tools/gpu_memcheck.py --config tests/llama2_7b_config.json --out out/memcheck --memory-gb 24,0
    python tools/gpu_memcheck.py --config tiny.json --device cpu --out /tmp/memcheck --memory-gb 0.05   # CPU check

No weight files are needed: the model is built on the meta device in bf16 and materialised on the device with
random weights (to_empty + init: the fp32 model never exists), then gets the paper's stage-1 LoRA (r 8, alpha 16
on q_proj, v_proj). For each --memory-gb (0 = the device's free memory; on CUDA a smaller value caps this
process with torch.cuda.set_per_process_memory_fraction, so a 24 GiB card is simulated on a larger one):
- eval: one generate() batch of random prompts at the plan's token budget (eval_token_budget), greedy;
- train: --steps micro-batches of --micro-batch x --seq tokens (the last --answer of each labelled, stage 1's
  one-word answers), each with an AdamW step, with checkpointing off and on; an out-of-memory is recorded as OOM.
Measured: torch.cuda.max_memory_allocated on CUDA (weights included; the plan's reserve is not compared, it
stands for what the allocator does not count), or on CPU the allocator's peak above the resident state of
the last step (the profiler's running total), against plan.step_bytes. Results -> OUT/memcheck.json + a table.
On an H100 the 7B run takes about 2 minutes for two memory settings (estimated, not timed here).
"""
import argparse
import gc
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lora  # noqa: E402
import plan  # noqa: E402
from files import read_json  # noqa: E402
from generate import generate  # noqa: E402
from model import Llama, ModelArgs, RotaryEmbedding  # noqa: E402
from plan_table import cpu_peak_bytes  # noqa: E402

GiB = plan.GiB
OOM = (torch.cuda.OutOfMemoryError,)


def random_model(args, device):
    """A Llama with random bf16 weights made directly on `device` (meta -> to_empty -> init)."""
    with torch.device("meta"):
        model = Llama(args).to(torch.bfloat16)
    model.to_empty(device=device)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02) if p.dim() == 2 else p.fill_(1.0)  # HF's initializer_range; norms at 1
    model.model.rotary_emb = RotaryEmbedding(args, device=device)  # its buffer was on meta
    return model


def peak(device, fn):
    """(result of fn, peak bytes): max_memory_allocated on CUDA; on CPU the allocator's peak above the start."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        torch.cuda.synchronize()
        return out, torch.cuda.max_memory_allocated(device)
    box = []
    return box, cpu_peak_bytes(lambda: box.append(fn()))


def free_memory(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def check_eval(model, args, device, memory, a):
    """One generate() batch at the plan's token budget: rows x (prompt + new tokens) <= budget."""
    budget = plan.eval_token_budget(args, memory, torch.bfloat16, autocast=True, prompt_len=a.prompt_len,
                                    device=device.type)
    rows = budget // (a.prompt_len + a.new_tokens)
    row = dict(what="eval", budget_tokens=budget, rows=rows, prompt_len=a.prompt_len, new_tokens=a.new_tokens)
    if rows < 1:
        return {**row, "measured": "budget below one row"}
    _, per_token = plan.eval_bytes(args, torch.bfloat16, True, a.prompt_len, device.type)
    tokens = rows * (a.prompt_len + a.new_tokens)
    # CUDA's counter includes the weights (not the reserve, which stands for what it does not see); CPU's peak
    # is measured above them.
    estimate = per_token * tokens + (plan.n_params(args) * 2 if device.type == "cuda" else 0)
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(3, args.vocab_size, (rows, a.prompt_len), generator=g).tolist()
    model.eval()
    t0 = time.time()
    try:
        _, got = peak(device, lambda: generate(model, prompts, a.new_tokens, args.eos_token_id, batch_size=rows,
                                               autocast=True))
    except OOM:
        got = "OOM"
    model.train()
    free_memory(device)
    return {**row, "tokens": tokens, "estimate": estimate, "measured": got, "seconds": round(time.time() - t0, 1)}


def check_train(model, args, device, memory, checkpointing, a):
    s = plan.Settings(micro_batch=a.micro_batch, cutoff_len=a.seq, weight_dtype=torch.bfloat16, autocast=True,
                      lora_targets=("q_proj", "v_proj"), lora_r=8, answer_tokens=a.micro_batch * a.answer,
                      device=device.type)
    mem_plan = plan.estimate(args, s)
    total = mem_plan.total(checkpointing)
    # CUDA: everything allocated, the reserve aside; CPU: one step above the resident state.
    estimate = total - plan.CUDA_RESERVE if device.type == "cuda" else mem_plan.step_bytes(checkpointing)
    row = dict(what="train", checkpointing=checkpointing, tokens=a.micro_batch * a.seq, answer_tokens=s.answer_tokens,
               estimate=estimate, plan_total=total, plan_says_fits=total <= memory)
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=device.type == "cuda")
    model.gradient_checkpointing = checkpointing
    model.packed = False  # the padded batch, which the plan models; the packed one keeps less (tests/test_plan.py)
    g = torch.Generator().manual_seed(2)

    def step():
        ids = torch.randint(3, args.vocab_size, (a.micro_batch, a.seq), generator=g).to(device)
        labels = torch.full_like(ids, -100)
        labels[:, -a.answer:] = ids[:, -a.answer:]
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model.loss(ids, labels, reduction="sum")
        (loss / a.answer).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    t0 = time.time()
    try:
        if device.type == "cuda":
            _, got = peak(device, lambda: [step() for _ in range(a.steps)])
        else:
            for _ in range(a.steps - 1):  # AdamW's state exists after the first step; measure the last
                step()
            _, got = peak(device, step)
    except OOM:
        got = "OOM"
    del opt
    model.zero_grad(set_to_none=True)
    free_memory(device)
    return {**row, "measured": got, "seconds": round(time.time() - t0, 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="an HF config.json (Llama), e.g. tests/llama2_7b_config.json")
    ap.add_argument("--out", required=True, help="directory for memcheck.json")
    ap.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (default cuda)")
    ap.add_argument("--memory-gb", default="0", help="comma-separated GiB to plan for (and on CUDA cap the process "
                    "at); 0 = the device's free memory (default 0)")
    ap.add_argument("--micro-batch", type=int, default=4, help="samples per micro-batch (default 4, the paper's)")
    ap.add_argument("--seq", type=int, default=1024, help="tokens per sample (default 1024, the paper's cutoff)")
    ap.add_argument("--answer", type=int, default=5, help="labelled tokens per sample (default 5: stage 1's word)")
    ap.add_argument("--steps", type=int, default=2, help="micro-batches per setting, each with an AdamW step (default 2)")
    ap.add_argument("--prompt-len", type=int, default=1024, help="eval prompt tokens (default 1024)")
    ap.add_argument("--new-tokens", type=int, default=200, help="eval new tokens (default 200, eval.py's and the authors')")
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA device visible; pass --device cpu with a small --config")
    args = ModelArgs.from_config(read_json(a.config), a.config)
    t0 = time.time()
    model = random_model(args, device)
    lora_model = False
    results = []
    for gb in (float(x) for x in a.memory_gb.split(",")):
        if device.type == "cuda":
            total = torch.cuda.get_device_properties(device).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, gb * GiB / total) if gb else 1.0, torch.device(device).index or 0)
        memory = gb * GiB if gb else plan.available_memory(device)
        if lora_model:  # the eval batch runs on the plain model: LoRA layers are a training concern
            lora.merge_lora(model)
        results.append({"memory_gib": memory / GiB, **check_eval(model, args, device, memory, a)})
        torch.manual_seed(0)
        lora.apply_lora(model, ["q_proj", "v_proj"], r=8, alpha=16)
        lora_model = True
        model.train()
        for checkpointing in (False, True):
            results.append({"memory_gib": memory / GiB, **check_train(model, args, device, memory, checkpointing, a)})
    os.makedirs(a.out, exist_ok=True)
    report = dict(device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", config=a.config,
                  args=vars(a), torch=torch.__version__, seconds=round(time.time() - t0, 1), results=results)
    with open(os.path.join(a.out, "memcheck.json"), "w") as f:
        json.dump(report, f, indent=1)
    measure = "max_memory_allocated" if device.type == "cuda" else "CPU allocator peak above the weights / resident state"
    print(f"{report['device']}, {a.config}: plan vs measured ({measure})")
    print(f"{'memory GiB':>10s} {'what':28s} {'plan GiB':>9s} {'measured GiB':>12s} {'ratio':>6s}  plan says")
    for r in results:
        what = (f"train, ckpt {'on' if r['checkpointing'] else 'off'}" if r["what"] == "train"
                else f"eval {r['rows']} x ({r['prompt_len']}+{r['new_tokens']})")
        est, got = r.get("estimate"), r["measured"]
        ratio = f"{est / got:.3f}" if isinstance(got, int) and got else ""
        says = ("fits" if r["plan_says_fits"] else "does not fit") if r["what"] == "train" else ""
        got = f"{got / GiB:.3f}" if isinstance(got, int) else got
        print(f"{r['memory_gib']:10.1f} {what:28s} {(est or 0) / GiB:9.3f} {got:>12s} {ratio:>6s}  {says}")
    print(f"wrote {os.path.join(a.out, 'memcheck.json')} ({report['seconds']} s)")
    return report


if __name__ == "__main__":
    main()
