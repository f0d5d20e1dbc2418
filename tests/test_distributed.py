"""train.py under torchrun: ranks share a global batch by samples, sum their gradients in one all-reduce, and
each resumes a checkpoint onto its own device; the result is the one-process run's."""
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

import distributed
import train
from test_train import ROOT, read_metrics, stage1_args


def test_ranks_split_samples_evenly_and_cover_the_batch_once():
    batch = list(range(10))
    for world, micro in [(1, 4), (2, 4), (3, 4), (4, 4), (8, 2), (16, 4)]:
        shares = [distributed.rank_share(batch, r, world, micro) for r in range(world)]
        assert [s for share in shares for mb in share for s in mb] == batch  # every sample once, in order
        sizes = [sum(map(len, share)) for share in shares]
        assert max(sizes) - min(sizes) <= 1  # no rank idles while another holds two samples more
        assert all(0 < len(mb) <= micro for share in shares for mb in share)
    assert [len(mb) for mb in distributed.rank_share(batch, 0, 1, 4)] == [3, 3, 4]  # 3 micro-batches, even sizes
    assert [distributed.rank_share(list(range(4)), r, 4, 4) for r in range(4)] == [[[0]], [[1]], [[2]], [[3]]]


def test_gradients_and_loss_travel_in_one_all_reduce(tmp_path, monkeypatch):
    """A one-process gloo group: the all-reduce is the identity, so the flat buffer must come back into every
    .grad unchanged (a missing .grad as zeros), in one call."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        calls = []
        real = dist.all_reduce
        monkeypatch.setattr(dist, "all_reduce", lambda t, *a, **k: (calls.append(t.numel()), real(t, *a, **k))[1])
        params = [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(5)),
                  torch.nn.Parameter(torch.randn(2, 2))]
        grads = [torch.randn(3, 4), torch.randn(5), None]
        for p, g in zip(params, grads):
            p.grad = g
        loss = distributed.all_reduce_sum(params, torch.tensor(2.5))
        assert calls == [12 + 5 + 4 + 1]
        assert loss.item() == 2.5
        assert torch.equal(params[0].grad, grads[0]) and torch.equal(params[1].grad, grads[1])
        assert torch.equal(params[2].grad, torch.zeros(2, 2))
    finally:
        dist.destroy_process_group()


def test_resume_loads_a_checkpoint_saved_on_another_device(micro_world, tmp_path, monkeypatch):
    """Rank 0 saves from cuda:0. The test writes state.pt as torch.save does from cuda:0 (the storages tagged
    'cuda:0'); on a machine without that device torch.load refuses it unless mapped, as every rank other than
    0 must map it to its own device. The resumed run still ends bit-identical to an uninterrupted one."""
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    train.main(stage1_args(micro_world, full, "--max-steps", "4", "--val-share", "0"))
    train.main(stage1_args(micro_world, cut, "--max-steps", "4", "--val-share", "0", "--stop-after", "2"))
    file = os.path.join(cut, "checkpoint", "state.pt")
    state = torch.load(file, weights_only=False)
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "_package_registry",
                  [(0, lambda storage: "cuda:0", lambda storage, location: None)] + torch.serialization._package_registry)
        torch.save(state, file)
    if not torch.cuda.is_available():  # the file really claims cuda:0
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(file, weights_only=False)
    train.main(stage1_args(micro_world, cut, "--max-steps", "4", "--val-share", "0", "--resume"))
    a, b = (load_file(os.path.join(d, "adapter_model.safetensors")) for d in (full, cut))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_ranks_split_one_micro_batch_and_match_one_process(micro_world, tmp_path):
    """--micro-batch 4 --grad-accum 1 on two ranks: one micro-batch a step, more ranks than micro-batches. Each rank
    takes 2 of the 4 samples (none idles): the very forward passes of one process with --micro-batch 2
    --grad-accum 2, the same global batch. (Against one micro-batch of 4, padding changes the rounding, and
    Adam's first steps, about lr * sign(grad), blow it up to 1e-3 in the loss of step 3.) The steps' losses,
    the validation loss and the adapter are the one-process run's."""
    w, one, two = micro_world, str(tmp_path / "one"), str(tmp_path / "two")
    args = lambda out, micro, accum: stage1_args(w, out, "--max-steps", "3", "--micro-batch", micro,
                                                 "--grad-accum", accum, "--val-share", "0.2")
    train.main(args(one, "2", "2"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(ROOT, "train.py"), *args(two, "4", "1")]
    subprocess.run(cmd, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=str(tmp_path),
                   capture_output=True, timeout=300)
    m1, m2 = read_metrics(one), read_metrics(two)
    assert [sorted(r) for r in m1] == [sorted(r) for r in m2] and any("val_loss" in r for r in m1)
    for r1, r2 in zip(m1, m2):
        for k in ("loss", "val_loss"):
            if k in r1:
                assert abs(r1[k] - r2[k]) <= 1e-5 * abs(r1[k]), (k, r1, r2)
    a, b = (load_file(os.path.join(d, "adapter_model.safetensors")) for d in (one, two))
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5
    assert any(a[k].abs().sum() > 0 for k in a if "lora_B" in k)
