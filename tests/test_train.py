"""train.py: the loop is exact (accumulation, resume, data parallel) and each stage trains what it should."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import data
import lora
import runs
import train
from model import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stage1_args(w, out, *extra):
    return ["--stage", "1", "--model", w["base"], "--asqa", w["asqa"], "--out", out, "--lr", "1e-2",
            "--micro-batch", "2", "--grad-accum", "2", "--max-records", "24", "--val-share", "0.1",
            "--save-every", "1", *extra]


def read_metrics(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_stage1_loss_goes_down_and_only_lora_weights_change(micro_world, tmp_path):
    w = micro_world
    out = str(tmp_path / "s1")
    model = train.train(train.parse_config(stage1_args(w, out, "--epochs", "8")))
    losses = [m["loss"] for m in read_metrics(out) if "loss" in m]
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses
    base = Llama.from_pretrained(w["base"]).state_dict()
    trained = model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in base.items())  # the frozen weights, bit for bit
    saved = load_file(os.path.join(out, "adapter_model.safetensors"))
    assert saved and all(".lora_A." in k or ".lora_B." in k for k in saved)
    cfg = json.load(open(os.path.join(out, "train_config.json")))
    assert cfg["lr"] == 1e-2 and cfg["lora_r"] == 8 and cfg["preset"] == "paper"
    assert json.load(open(os.path.join(out, "lineage.json")))["merged"] == []


def test_merge_stage1_starts_stage2_from_base_plus_merged_stage1_delta(micro_world, tmp_path):
    w = micro_world
    s1, s2 = str(tmp_path / "s1"), str(tmp_path / "s2")
    train.main(stage1_args(w, s1, "--max-steps", "3"))
    model = train.train(train.parse_config(["--stage", "2", "--init", s1, "--model", w["base"], "--hotpot", w["hotpot"],
                                            "--out", s2, "--preset", "micro", "--max-steps", "1", "--merge-stage1"]))
    base = Llama.from_pretrained(w["base"])
    a1 = load_file(os.path.join(s1, "adapter_model.safetensors"))
    key = "base_model.model.model.layers.0.self_attn.q_proj."
    expected = base.model.layers[0].self_attn.q_proj.weight + 2.0 * a1[key + "lora_B.weight"] @ a1[key + "lora_A.weight"]
    got = model.model.layers[0].self_attn.q_proj.weight
    assert (got - expected).abs().max().item() < 1e-6
    assert not torch.equal(got, base.model.layers[0].self_attn.q_proj.weight)
    lin = runs.read_lineage(s2)
    assert lin["base"] == os.path.normpath(w["base"]) and lin["merged"] == [os.path.normpath(s1)]
    rebuilt, _ = lora.load_trained(s2, Llama.from_pretrained)
    tokens = torch.randint(0, 300, (1, 12))
    with torch.no_grad():
        assert torch.allclose(rebuilt(tokens), model(tokens), atol=1e-5)


def test_killed_and_resumed_run_ends_bit_identical(micro_world, tmp_path):
    w = micro_world
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    train.main(stage1_args(w, full, "--max-steps", "6"))
    train.main(stage1_args(w, cut, "--max-steps", "6", "--stop-after", "3"))
    assert not os.path.exists(os.path.join(cut, "adapter_model.safetensors"))  # only the checkpoint survived
    train.main(stage1_args(w, cut, "--max-steps", "6", "--resume"))
    a, b = (load_file(os.path.join(d, "adapter_model.safetensors")) for d in (full, cut))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [m["step"] for m in read_metrics(cut) if "loss" in m] == list(range(1, 7))


def test_resume_logs_each_step_once_when_stopped_between_checkpoints(micro_world, tmp_path):
    """Stopped at step 3 with the checkpoint of step 2: step 3 runs again on --resume and is logged once."""
    cut = str(tmp_path / "cut")
    train.main(stage1_args(micro_world, cut, "--max-steps", "6", "--save-every", "2", "--stop-after", "3"))
    assert [m["step"] for m in read_metrics(cut) if "loss" in m] == [1, 2, 3]
    train.main(stage1_args(micro_world, cut, "--max-steps", "6", "--save-every", "2", "--resume"))
    assert [m["step"] for m in read_metrics(cut) if "loss" in m] == list(range(1, 7))


def test_accumulated_micro_batches_give_the_one_big_batch_gradient(micro_world):
    model = lora.apply_lora(Llama.from_pretrained(micro_world["base"]))
    with torch.no_grad():
        for k, p in model.named_parameters():
            if "lora_B" in k:
                p.normal_(0, 0.1)
    tok = data.Tokenizer(micro_world["base"])
    recs = [dict(prompt=f"question {k}", context="", output="answer " * (1 + 5 * k)) for k in range(4)]
    samples, _ = data.tokenize_records(tok, recs)
    assert len({train.n_answer_tokens(s) for s in samples}) == 4  # uneven answer lengths
    params = [p for p in model.parameters() if p.requires_grad]
    n = sum(train.n_answer_tokens(s) for s in samples)
    for s in samples:
        train.run_micro_batch(model, [s], tok.pad_id, torch.device("cpu"), False, n)
    accumulated = [p.grad.clone() for p in params]
    model.zero_grad()
    ids, labels = (torch.from_numpy(a) for a in data.collate(samples, tok.pad_id))
    model.loss(ids, labels).backward()  # mean over all answer tokens of one batch
    for a, b in zip(accumulated, params):
        assert (a - b.grad).abs().max().item() <= 1e-6 * max(1.0, b.grad.abs().max().item())


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(micro_world, tmp_path, monkeypatch):
    out = str(tmp_path / "nan")
    calls = {"n": 0}
    real = train.run_micro_batch

    def poisoned(*a):
        calls["n"] += 1
        loss = real(*a)
        return loss * float("nan") if calls["n"] > 4 else loss  # steps 1-2 fine (2 micro-batches each)
    monkeypatch.setattr(train, "run_micro_batch", poisoned)
    with pytest.raises(SystemExit, match="loss is nan at step 3.*last good checkpoint"):
        train.main(stage1_args(micro_world, out, "--max-steps", "5", "--val-share", "0"))
    state = torch.load(os.path.join(out, "checkpoint", "state.pt"), weights_only=False)
    assert state["step"] == 2


def test_torchrun_two_gloo_processes_match_one_process(micro_world, tmp_path):
    w = micro_world
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    train.main(stage1_args(w, one, "--max-steps", "3", "--val-share", "0"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29512",
           os.path.join(ROOT, "train.py"), *stage1_args(w, two, "--max-steps", "3", "--val-share", "0")]
    subprocess.run(cmd, check=True, env=env, cwd=str(tmp_path), capture_output=True, timeout=300)
    a, b = (load_file(os.path.join(d, "adapter_model.safetensors")) for d in (one, two))
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5
    assert any(a[k].abs().sum() > 0 for k in a if "lora_B" in k)


def test_missing_tiny_base_names_the_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("data/tiny")
    import tinyworld
    tinyworld.write("data/tiny", names=12, asqa_names=6, hotpot_items=12, corpus_draws=5)
    with pytest.raises(SystemExit, match=r"tiny/base: missing.*git checkout tiny/base.*python train.py --stage 0"):
        train.main(["--stage", "1"])


def test_stage0_rebuilds_byte_identical_files(tmp_path):
    """Seeded everything and a single-threaded sentencepiece trainer: two stage-0 runs, the same bytes."""
    import tinyworld
    files = tinyworld.write(str(tmp_path / "data"), seed=2, names=20, asqa_names=4, hotpot_items=12,
                            corpus_draws=40)
    runs = [str(tmp_path / d) for d in ("a", "b")]
    for out in runs:
        train.main(["--stage", "0", "--preset", "micro", "--max-steps", "8", "--base-corpus",
                    files["base_corpus.jsonl"], "--whole-words", files["world_words.txt"], "--out", out])
    for name in ("model.safetensors", "tokenizer.model", "config.json"):
        a, b = (open(os.path.join(out, name), "rb").read() for out in runs)
        assert a == b, name


@pytest.mark.parametrize("stop", [4, 5])  # at the phase boundary, inside the second phase
def test_stage0_second_phase_has_its_own_schedule_and_resumes_bit_identical(tmp_path, stop):
    """--polish-steps: after --max-steps, a fresh AdamW with its own warm-up and cosine from --polish-lr on the
    corpus's phase-2 records; a run killed at or after the boundary and resumed ends with the same bytes."""
    import tinyworld
    files = tinyworld.write(str(tmp_path / "data"), seed=2, names=20, asqa_names=4, hotpot_items=12,
                            corpus_draws=40, polish_draws=40)
    args = ["--stage", "0", "--preset", "micro", "--max-steps", "4", "--polish-steps", "3", "--polish-lr", "1e-3",
            "--save-every", "1", "--base-corpus", files["base_corpus.jsonl"], "--whole-words",
            files["world_words.txt"]]
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    train.main(args + ["--out", full])
    rows = [m for m in read_metrics(full) if "loss" in m]
    assert [m["step"] for m in rows] == list(range(1, 8))
    assert rows[3]["lr"] == 0.0 and rows[4]["lr"] == pytest.approx(1e-3)  # the first phase ends, the second starts
    train.main(args + ["--out", cut, "--stop-after", str(stop)])
    train.main(args + ["--out", cut, "--resume"])
    a, b = (open(os.path.join(d, "model.safetensors"), "rb").read() for d in (full, cut))
    assert a == b
    assert [m["step"] for m in read_metrics(cut) if "loss" in m] == list(range(1, 8))


# stopped inside the main phase, at its end, and inside the polish phase
@pytest.mark.parametrize("stop", [2, 4, 5])
def test_stage0_phases_run_in_order_with_their_own_schedules_and_resume_bit_identical(tmp_path, stop):
    """The main phase, then --polish-steps: a fresh AdamW with its own warm-up and cosine from its own lr on the
    corpus's phase-2 records; a run killed anywhere and resumed ends with the same bytes."""
    import tinyworld
    files = tinyworld.write(str(tmp_path / "data"), seed=2, names=20, asqa_names=4, hotpot_items=12,
                            corpus_draws=40, polish_draws=40)
    args = ["--stage", "0", "--preset", "micro", "--max-steps", "4", "--polish-steps", "3", "--polish-lr", "4e-3",
            "--save-every", "1", "--base-corpus", files["base_corpus.jsonl"], "--whole-words",
            files["world_words.txt"]]
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    train.main(args + ["--out", full])
    rows = [m for m in read_metrics(full) if "loss" in m]
    assert [m["step"] for m in rows] == list(range(1, 8))
    assert rows[0]["lr"] == pytest.approx(1e-2) and rows[3]["lr"] == 0.0  # the main phase: its peak, decayed
    assert rows[4]["lr"] == pytest.approx(4e-3) and rows[6]["lr"] == 0.0  # then the polish phase
    train.main(args + ["--out", cut, "--stop-after", str(stop)])
    train.main(args + ["--out", cut, "--resume"])
    a, b = (open(os.path.join(d, "model.safetensors"), "rb").read() for d in (full, cut))
    assert a == b
    assert [m["step"] for m in read_metrics(cut) if "loss" in m] == list(range(1, 8))


def test_each_epoch_is_a_fresh_permutation_and_a_step_always_the_same_batch():
    trn = [([k], [k]) for k in range(10)]
    batches = [train.batch_at(step, trn, per_step=4, seed=3) for step in range(6)]
    assert [e for e, _ in batches] == [0, 0, 0, 1, 1, 1] and [len(b) for _, b in batches] == [4, 4, 2] * 2
    for epoch in (0, 1):  # every sample once per epoch, in another order each epoch
        assert sorted(s[0][0] for _, b in batches[3 * epoch:3 * epoch + 3] for s in b) == list(range(10))
    assert batches[0][1] != batches[3][1] and train.batch_at(4, trn, 4, 3) == batches[4]


def test_gradient_checkpointing_gives_the_same_gradients(hf_llama):
    path, _ = hf_llama(num_key_value_heads=2)
    tokens = torch.randint(0, 128, (2, 16))
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)  # the same random lora_A both times
        model = lora.apply_lora(Llama.from_pretrained(path))
        with torch.no_grad():
            for k, p in model.named_parameters():
                if "lora_B" in k:
                    p.fill_(0.01)
        model.gradient_checkpointing = ckpt
        model.train()
        model.loss(tokens, tokens).backward()
        grads.append([p.grad for p in model.parameters() if p.requires_grad])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))
