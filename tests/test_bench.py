"""bench.py's workers run (ours and the reference, training and generation) and report what the table needs.
Timings are never asserted: speed is measured by `python bench.py`, not by tests."""
import argparse
import json

import torch

import bench
from model import Llama, ModelArgs


def test_workers_run_and_report_speed_and_memory(tmp_path):
    ckpt = str(tmp_path / "tiny")
    Llama(ModelArgs(**dict(bench.SIZES["tiny"], num_hidden_layers=1), max_position_embeddings=512)).save_pretrained(ckpt)
    args = argparse.Namespace(device="cpu", steps=1, warmup=0, batch=2, gen_batch=3, seq=32, gen_prompt=16,
                              new_tokens=4, repeats=1)
    for task in ("train", "generate"):
        row = bench.compare(args, task, "tiny", ckpt)
        for impl in ("ours", "reference"):
            assert "error" not in row[impl], row[impl]
            assert row[impl]["tokens_per_s"] > 0 and row[impl]["peak_rss_mb"] > 0
        assert row["speed_ratio"] > 0
        assert bench.fmt_row(row).startswith(f"| {task} | tiny |")


def test_lora_flops_formula():
    c = bench.SIZES["llama2-7b"]
    n = bench.matmul_params(c)
    assert 6.5e9 < n < 6.7e9  # Llama-2-7B: 6.74B parameters less the 131M-parameter input embedding
    assert bench.train_flops_per_token(c, 1024) == 4 * n + 12 * 32 * 1024 * 4096


def test_random_init_allocates_the_model_once_in_its_own_dtype():
    """bench.py --cuda builds Llama-2-7B's shape from random weights: on the meta device, then allocated in bf16
    on the device. Recorded here on the CPU with the tiny shape: no tensor the size of a weight in fp32."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class Allocations(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.fp32 = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            self.fp32 += [t.numel() for t in tree_leaves(out) if isinstance(t, torch.Tensor)
                          and t.device.type != "meta" and t.dtype == torch.float32]
            return out

    with Allocations() as seen:
        model = bench.build("ours", "", "tiny", torch.device("cpu"), torch.bfloat16)
    c = bench.SIZES["tiny"]
    assert max(seen.fp32) == c["hidden_size"] // c["num_attention_heads"] // 2  # RoPE's inv_freq only
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.model.rotary_emb.inv_freq.dtype == torch.float32
    assert all(p.device.type == "cpu" and p.abs().max() > 0 for p in model.parameters())
    logits = model(torch.randint(0, c["vocab_size"], (2, 8)))
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()


# ---- --workload real ----

def run_real_worker(capsys, **kw):
    a = argparse.Namespace(**{**dict(device="cpu", threads=0, steps=1, warmup=0, batch=2, gen_batch=4,
                                     new_tokens=4, dtype="fp32"), **kw})
    bench.real_worker(a)
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("RESULT ")]
    return json.loads(line[0][7:])


def test_real_workloads_come_from_the_project_builders(tmp_path):
    """stage-1 samples: the Cognition prompt, a few answer tokens; stage 2: long prompts, long answers; eval
    prompts: eval.model_prompts' benchmark and cognition prompts; every row a template's shared prefix."""
    work = bench.build_workloads(8, 6, str(tmp_path / "w.json"))
    assert json.loads((tmp_path / "w.json").read_text()) == json.loads(json.dumps(work))
    s1, s2 = work["stage1"], work["stage2"]
    assert len(s1) == len(s2) == 8 and len(work["eval"]) == 6
    answers = lambda s: sum(y != -100 for y in s[1][1:])
    assert all(200 < len(ids) < 400 and 1 <= answers((ids, y)) <= 4 for ids, y in s1)
    assert all(len(ids) > 500 and answers((ids, y)) > 50 for ids, y in s2)
    from packing import shared_prefixes
    assert min(n for _, n in shared_prefixes([ids for ids, _ in s1])[1:]) > 100


def test_real_workers_run_both_sides_and_agree(tmp_path, capsys):
    """Each workload, ours and the reference, on a 1-layer model of the tiny base's vocabulary: both report
    speed and memory; the first loss (LoRA B = 0: the base model's) and greedy outputs agree."""
    ckpt = str(tmp_path / "m")
    torch.manual_seed(0)
    Llama(ModelArgs(hidden_size=64, intermediate_size=96, num_hidden_layers=1, num_attention_heads=4,
                    num_key_value_heads=4, vocab_size=2048, max_position_embeddings=2048)).save_pretrained(ckpt)
    work = str(tmp_path / "w.json")
    bench.build_workloads(4, 4, work)
    for task in ("stage1", "stage2", "eval"):
        res = {impl: run_real_worker(capsys, impl=impl, task=task, ckpt=ckpt, work=work)
               for impl in ("ours", "reference")}
        for r in res.values():
            assert r["samples_per_s"] > 0 and r["answer_tokens_per_s"] > 0 and r["peak_rss_mb"] > 0
        if task == "eval":
            assert res["ours"]["outputs"] == res["reference"]["outputs"]
        else:
            assert abs(res["ours"]["first_loss"] - res["reference"]["first_loss"]) < 1e-4
    bf16 = run_real_worker(capsys, impl="ours", task="stage1", ckpt=ckpt, work=work, dtype="bf16", threads=1)
    assert bf16["threads"] == 1 and bf16["samples_per_s"] > 0


def test_real_rows_keep_every_run_and_format(capsys):
    runs = [{"samples_per_s": x, "answer_tokens_per_s": 3 * x, "peak_rss_mb": 100.0, "first_loss": 2.0}
            for x in (1.0, 3.0, 2.0)]
    s = bench.summarize(runs + [{"error": "boom"}])
    assert s["samples_per_s"] == 2.0 and s["samples_per_s_min"] == 1.0 and s["samples_per_s_max"] == 3.0
    assert len(s["runs"]) == 3 and s["failed_runs"] == 1
    assert bench.summarize([{"error": "boom"}]) == {"error": "boom"}
    row = {"task": "stage1", "size": "tiny", "dtype": "fp32", "ours": s, "reference": s, "speed_ratio": 1.0,
           "first_loss_diff": 0.0}
    line = bench.fmt_real_row(row)
    assert line.startswith("| stage1 | tiny | fp32 | 2.00 (1.00-3.00) | 6 | 100 |") and "**1.00x**" in line
    assert len(line.split("|")) == len(bench.REAL_HEADER[0].split("|"))
