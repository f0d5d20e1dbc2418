"""bench.py's workers run (ours and the reference, training and generation) and report what the table needs.
Timings are never asserted: speed is measured by `python bench.py`, not by tests."""
import argparse

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
