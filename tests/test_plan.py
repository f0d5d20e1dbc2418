"""plan.py: the memory plan follows what autograd really keeps (measured on CPU), and it is what turns gradient
checkpointing on for the paper's 7B run on a 24 GB card."""
import json
import os
import sys

import pytest
import torch

import plan
import train
from model import ModelArgs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import gpu_memcheck  # noqa: E402
import plan_table  # noqa: E402

LLAMA2_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32, vocab_size=32000)
PAPER_STAGE1 = plan.Settings(micro_batch=4, cutoff_len=1024, weight_dtype=torch.bfloat16, autocast=True,
                             lora_targets=("q_proj", "v_proj"), lora_r=8,
                             answer_tokens=plan.answer_tokens_bound("cognition", 4, 1024))
GiB = plan.GiB


def test_paper_7b_stage1_needs_checkpointing_on_24gb_and_not_on_80gb():
    args = ModelArgs(**LLAMA2_7B)
    p = plan.estimate(args, PAPER_STAGE1)
    assert p.get("weights") == 6_738_415_616 * 2  # Llama-2-7B's parameter count, bf16
    assert p.total(True) <= 24 * GiB < p.total(False) <= 80 * GiB
    on, line = plan.choose_checkpointing(args, PAPER_STAGE1, 24 * GiB)
    assert on and line.startswith("auto -> on")
    on, line = plan.choose_checkpointing(args, PAPER_STAGE1, 80 * GiB)
    assert not on and line.startswith("auto -> off")
    assert plan.choose_checkpointing(args, PAPER_STAGE1, 80 * GiB, "on")[0]  # an explicit choice wins
    assert not plan.choose_checkpointing(args, PAPER_STAGE1, 24 * GiB, "off")[0]


def test_7b_activations_per_token_per_block_follow_the_walk():
    """Every saved tensor of a Llama-2-7B block under bf16 autocast, bytes per token (h 4096, ffn 11008, 32 heads):
    two fp32 norm inputs, two bf16 LoRA input copies, SDPA's q, k, v, out (bf16) + fp32 lse per head, silu's
    input, its output and up_proj's output, and LoRA A's r outputs."""
    p = plan.estimate(ModelArgs(**LLAMA2_7B), PAPER_STAGE1)
    h, inter = 4096, 11008
    assert p.per_token_block == 2 * (4 * h + 4) + 2 * (2 * h + 2 * 8) + 4 * 2 * h + 4 * 32 + 3 * 2 * inter


@pytest.mark.parametrize("case", plan_table.CASES, ids=lambda c: c.name)
def test_saved_for_backward_matches_the_plan(case):
    model, tokens, labels, p = plan_table.build(case)
    got = plan_table.saved_bytes(model, tokens, labels, case.autocast)
    print(f"\n{case.name}: saved for backward, plan {p.saved_bytes / 2**20:.2f} MiB, measured {got / 2**20:.2f} MiB")
    assert abs(p.saved_bytes / got - 1) < 0.15
    model.packed = True  # what training runs: packed rows, answer-only last block; the plan bounds it
    assert plan_table.saved_bytes(model, tokens, labels, case.autocast) <= 1.15 * p.saved_bytes


@pytest.mark.parametrize("case", plan_table.CASES, ids=lambda c: c.name)
def test_peak_of_a_training_step_matches_the_plan(case):
    model, tokens, labels, p = plan_table.build(case)
    peaks = {}
    for ckpt in (False, True):
        peaks[ckpt] = got = plan_table.step_peak(model, tokens, labels, case.autocast, ckpt)
        print(f"\n{case.name}: peak, ckpt {ckpt}, plan {p.step_bytes(ckpt) / 2**20:.2f} MiB, measured {got / 2**20:.2f}")
        assert abs(p.step_bytes(ckpt) / got - 1) < 0.15
    assert peaks[True] < 0.8 * peaks[False] and p.step_bytes(True) < 0.8 * p.step_bytes(False)  # what it is for


def test_eval_budget_grows_with_memory_and_counts_the_kv_cache():
    args = ModelArgs(**LLAMA2_7B)
    assert plan.eval_token_budget(args, 12 * GiB, torch.bfloat16) == 0  # the weights alone do not fit
    b24, b80 = (plan.eval_token_budget(args, m * GiB, torch.bfloat16, prompt_len=1024) for m in (24, 80))
    kv = 2 * 32 * 32 * 128 * 2  # k and v, 32 layers x 32 heads x 128, bf16: 512 KiB per token
    assert 0 < b24 < b80 and (80 - 24) * GiB / kv * 0.8 < b80 - b24 < (80 - 24) * GiB / kv


def test_gpu_memcheck_runs_on_cpu_and_the_plan_matches_it(tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(dict(hidden_size=128, intermediate_size=352, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, vocab_size=512, max_position_embeddings=512)))
    report = gpu_memcheck.main(["--config", str(config), "--device", "cpu", "--out", str(tmp_path / "out"),
                                "--memory-gb", "0.01", "--seq", "96", "--prompt-len", "48", "--new-tokens", "8"])
    assert json.loads((tmp_path / "out" / "memcheck.json").read_text())["results"] == report["results"]
    ev, off, on = report["results"]
    assert ev["what"] == "eval" and ev["rows"] * (48 + 8) <= ev["budget_tokens"]
    assert ev["measured"] <= ev["estimate"] < 1.5 * ev["measured"]  # the budget errs on the safe side
    for r in (off, on):
        assert abs(r["estimate"] / r["measured"] - 1) < 0.15, r


def test_train_plan_reads_only_a_config_json_and_exits(capsys, tmp_path):
    out = tmp_path / "run"
    train.main(["--stage", "1", "--model", os.path.join(ROOT, "tests", "llama2_7b_config.json"), "--device", "cuda",
                "--plan", "--memory-gb", "24", "--out", str(out)])
    text = capsys.readouterr().out
    assert "6.74B parameters, bfloat16" in text and "micro-batch 4 x 1024" in text
    assert "grad checkpointing: auto -> on" in text and not out.exists()
    train.main(["--stage", "1", "--model", os.path.join(ROOT, "tests", "llama2_7b_config.json"), "--device", "cuda",
                "--plan", "--memory-gb", "24", "--grad-checkpointing", "off"])
    assert "grad checkpointing: off (asked for" in capsys.readouterr().out


def test_a_run_turns_checkpointing_on_when_the_plan_does_not_fit(micro_world, tmp_path, capsys):
    w = micro_world
    args = ["--stage", "1", "--model", w["base"], "--asqa", w["asqa"], "--out", str(tmp_path / "s1"),
            "--max-records", "8", "--max-steps", "1", "--micro-batch", "2", "--grad-accum", "1"]
    model = train.train(train.parse_config(args + ["--memory-gb", "0.001"]))
    assert model.gradient_checkpointing and "grad checkpointing: auto -> on" in capsys.readouterr().out
    model = train.train(train.parse_config(args + ["--memory-gb", "64"]))
    assert not model.gradient_checkpointing and "auto -> off" in capsys.readouterr().out
