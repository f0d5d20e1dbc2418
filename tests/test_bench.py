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
