"""plan.py's training estimate against measurement on CPU, for small shapes: prints a markdown table.

    python tools/plan_table.py          # ~1 min on 2 cores; tests/test_plan.py checks every row within 15%

Two measurements of one micro-batch's forward + backward (random weights, LoRA applied, answer-only loss):
- saved: the bytes autograd keeps for backward, seen by torch.autograd.graph.saved_tensors_hooks, one count per
  storage, parameters excluded (checkpointing off only: inside a checkpointed block, checkpoint's own hooks
  take over and nothing reaches ours);
- peak: the CPU allocator's peak during forward + backward above what existed before, gradients included
  (the torch profiler's memory events carry the allocator's running total), against the plan's step_bytes.
"""
import json
import os
import sys
import tempfile
from dataclasses import dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lora  # noqa: E402
import plan  # noqa: E402
from model import Llama, ModelArgs  # noqa: E402


@dataclass
class Case:
    name: str
    args: dict
    micro_batch: int
    seq: int
    answer: int  # answer tokens per sample (the last ones)
    weights: str = "float32"  # float32 | bfloat16
    autocast: bool = False
    targets: str = "q_proj,v_proj"  # "" = full-parameter training (stage 0)
    r: int = 8


CASES = [
    Case("fp32, LoRA q,v", dict(hidden_size=128, intermediate_size=344, num_hidden_layers=2, num_attention_heads=4),
         4, 128, 8),
    Case("fp32 w + bf16 autocast (CPU auto), GQA 8/2", dict(hidden_size=128, intermediate_size=384, num_hidden_layers=3,
         num_attention_heads=8, num_key_value_heads=2), 2, 192, 16, autocast=True),
    Case("bf16 w + autocast (CUDA's flow)", dict(hidden_size=192, intermediate_size=512, num_hidden_layers=3,
         num_attention_heads=6), 4, 96, 4, weights="bfloat16", autocast=True),
    Case("bf16, GQA 4/1, long answers", dict(hidden_size=96, intermediate_size=256, num_hidden_layers=4,
         num_attention_heads=4, num_key_value_heads=1, vocab_size=512), 2, 256, 200, weights="bfloat16", autocast=True),
    Case("fp32, all-linear LoRA r16 (tiny preset)", dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2,
         num_attention_heads=8), 3, 160, 30, targets="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", r=16),
    Case("fp32 w + autocast, full training (stage 0)", dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2,
         num_attention_heads=4, vocab_size=512, tie_word_embeddings=True), 4, 128, 127, autocast=True, targets=""),
]


def build(case: Case, seed=0):
    torch.manual_seed(seed)
    args = ModelArgs(**{"vocab_size": 256, "num_key_value_heads": case.args["num_attention_heads"], **case.args})
    model = Llama(args).to(getattr(torch, case.weights))
    if case.targets:
        lora.apply_lora(model, case.targets.split(","), case.r, 2 * case.r)
    model.train()
    model.packed = False  # the plan is the padded batch's; the packed one saves less (tests/test_plan.py)
    tokens = torch.randint(0, args.vocab_size, (case.micro_batch, case.seq))
    labels = tokens.clone()
    labels[:, : case.seq - case.answer] = -100
    settings = plan.Settings(micro_batch=case.micro_batch, cutoff_len=case.seq, weight_dtype=getattr(torch, case.weights),
                             autocast=case.autocast, lora_targets=tuple(case.targets.split(",")) if case.targets else (),
                             lora_r=case.r, answer_tokens=case.micro_batch * (case.answer - 1), device="cpu")
    return model, tokens, labels, plan.estimate(args, settings)


def forward(model, tokens, labels, autocast):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        return model.loss(tokens, labels, reduction="sum")


def saved_bytes(model, tokens, labels, autocast):
    """Bytes of the distinct storages autograd saves during the forward, parameters excluded."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = forward(model, tokens, labels, autocast)
    del loss
    return sum(seen.values())


def cpu_peak_bytes(fn):
    """Peak of the CPU allocator's bytes allocated while fn() runs, above what existed before it."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as tmp:
        prof.export_chrome_trace(os.path.join(tmp, "trace.json"))
        with open(os.path.join(tmp, "trace.json")) as f:
            events = json.load(f)["traceEvents"]
    memory = sorted((e for e in events if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0),
                    key=lambda e: e["ts"])
    if not memory:
        return 0
    # The running total is process-wide and never forgets a block that an earlier profiling session allocated
    # and that was freed outside one: measure from this session's own starting point.
    start = memory[0]["args"]["Total Allocated"] - memory[0]["args"]["Bytes"]
    return max(e["args"]["Total Allocated"] for e in memory) - start


def step_peak(model, tokens, labels, autocast, checkpointing):
    """The peak of a micro-batch whose gradients accumulate onto existing ones (train.py's micro-batches after
    the first of a step): the first call is the warm-up and allocates the gradients."""
    model.gradient_checkpointing = checkpointing

    def step():
        forward(model, tokens, labels, autocast).backward()

    step()
    return cpu_peak_bytes(step)


def measure(case: Case):
    """[(what, estimate bytes, measured bytes)] for one case."""
    model, tokens, labels, p = build(case)
    rows = [("saved, ckpt off", p.saved_bytes, saved_bytes(model, tokens, labels, case.autocast))]
    for ckpt in (False, True):
        rows.append((f"peak, ckpt {'on' if ckpt else 'off'}", p.step_bytes(ckpt),
                     step_peak(model, tokens, labels, case.autocast, ckpt)))
    return rows


def table(cases=CASES):
    lines = ["| shape | tokens | measure | plan (MiB) | measured (MiB) | plan / measured |", "|---|---|---|---|---|---|"]
    results = []
    for case in cases:
        a = case.args
        shape = (f"{case.name}: d {a['hidden_size']}, ffn {a['intermediate_size']}, {a['num_hidden_layers']} layers, "
                 f"{a['num_attention_heads']} heads")
        for what, est, got in measure(case):
            results.append((case, what, est, got))
            lines.append(f"| {shape} | {case.micro_batch} x {case.seq} | {what} | {est / 2**20:.2f} | {got / 2**20:.2f} "
                         f"| {est / got:.3f} |")
    return "\n".join(lines), results


if __name__ == "__main__":
    torch.set_num_threads(min(2, torch.get_num_threads()))
    print(table()[0])
