"""The tiny world: deterministic raw files in the real schemas, and the whole pipeline on the micro preset."""
import json
import os
import shutil
import subprocess
import sys
import time

import torch

import data
import stage0
import eval as ev
import tinyworld
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_same_seed_same_bytes_other_seed_other_world(tmp_path):
    a, b, c = (tinyworld.write(str(tmp_path / d), seed=s, names=30, asqa_names=20, hotpot_items=30,
                               corpus_draws=50) for d, s in (("a", 0), ("b", 0), ("c", 1)))
    for name in a:
        assert open(a[name], "rb").read() == open(b[name], "rb").read()
        assert open(a[name], "rb").read() != open(c[name], "rb").read()


def test_the_default_world_is_the_same_in_every_process(tmp_path):
    """Python salts string hashes per process; nothing in the world may depend on a set's order."""
    for d, salt in (("a", "1"), ("b", "2")):
        subprocess.run([sys.executable, os.path.join(ROOT, "tinyworld.py"), "--out", str(tmp_path / d)], check=True,
                       env=dict(os.environ, PYTHONHASHSEED=salt), capture_output=True, cwd=ROOT)
    for name in os.listdir(tmp_path / "a"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_builders_consume_the_world_with_nothing_skipped(tmp_path):
    files = tinyworld.write(str(tmp_path), seed=0, names=50, asqa_names=40, hotpot_items=30, corpus_draws=50)
    stats = {}
    rows = data.build_benchmark(files["ASQA.json"], stats=stats)
    assert stats["records_kept"] == stats["records"] == 40
    assert stats["pairs_no_context"] == stats["pairs_no_wikipage"] == stats["pairs_no_answer"] == 0
    assert stats["dropped_by_filter"] == 0 and {r["split"] for r in rows} == {"train", "test"}
    for r in rows:  # a known question is answered by its passage, the unknown one is not
        assert any(a in r["context"] for a in r["known_answers"])
        assert r["known_question"].split()[-2] in r["context"] or r["known_question"].split()[-1][:-1] in r["context"]
    items = json.load(open(files["hotpot_train_v1.1.json"]))
    assert all(len(i["context"]) == 10 and i["answer"] in data.hotpot_context(i) for i in items)
    assert len(data.stage2_records(files["hotpot_train_v1.1.json"], n=30)) == 30
    base = stage0.base_records(files["base_corpus.jsonl"])
    plain = [r for r in base if r["context"] and not any(q in r["prompt"] for q, _ in tinyworld.FORMAT_REQUESTS)]
    assert len(plain) >= 10 and all(r["output"] in r["context"] for r in plain)  # every question is answerable


def test_stage0_teaches_general_skills_but_none_of_the_us_tuning_tasks(tmp_path):
    """The base may read, copy and follow format requests of its own pool, like a chat model; it never sees
    a Sufficient/Insufficient judgement, a 'Not Provided' reply, a CHECKING review, the stage-1 or stage-2
    prompt, or a sentence of the stage-2 instruction pool. (The evaluation prompt's TASK_ASSIGNMENT_PREFIX
    names the Cognition Assessment Task; it is part of the prompt a chat model is asked, not a task.)"""
    files = tinyworld.write(str(tmp_path), seed=0, names=40, asqa_names=10, hotpot_items=20, corpus_draws=1200)
    base = stage0.base_records(files["base_corpus.jsonl"])
    kinds = {"eval": 0, "qa": 0, "request": 0, "copy": 0, "several passages": 0, "phase 2": 0}
    for r in base:
        assert not any(w in r["output"].lower() for w in ("sufficient", "not provided", "checking", "fulfilled"))
        assert not any(s in r["prompt"] or s in r["output"] for s, _, _ in data.INSTRUCTIONS)
        assert data.TASK_COGNITION[:60] not in r["prompt"] and data.TASK_PROMPT[:60] not in r["prompt"]
        assert "CHECKING" not in r["prompt"]
        kinds["eval" if r.get("format") == "raw" else "qa" if r["context"] else "copy"] += 1
        kinds["request"] += any(q in r["prompt"] for q, _ in tinyworld.FORMAT_REQUESTS)
        kinds["several passages"] += r["context"].count("This is a passage about") > 1
        kinds["phase 2"] += r["phase"] == 2
    assert min(kinds.values()) >= 20, kinds


def test_whole_pipeline_on_the_micro_preset(tmp_path, monkeypatch):
    """The README's demo, in order, from a directory holding only the shipped base: the world is written,
    stage 1 -> stage 2 -> eval (micro-sized steps and rows), then the ablation rows."""
    import eval as ev
    import train
    shutil.copytree(os.path.join(ROOT, tinyworld.BASE), tmp_path / tinyworld.BASE,
                    ignore=shutil.ignore_patterns("checkpoint"))
    monkeypatch.chdir(tmp_path)
    train.main(["--stage", "1", "--preset", "micro"])  # writes data/tiny first: nothing else exists yet
    train.main(["--stage", "2", "--init", "out/stage1", "--preset", "micro"])
    train.main(["--stage", "2", "--data", "qa", "--preset", "micro"])
    ev.main(["--max-rows", "6", "--instruction-items", "3", "--max-new-tokens", "24", "--instruction-max-new-tokens", "24"])
    assert sorted(os.listdir("data/tiny")) == ["ASQA.json", "base_corpus.jsonl", "hotpot_train_v1.1.json",
                                               "world_words.txt"]
    for run in ("stage1", "stage2", "qa_only"):
        assert {"adapter_model.safetensors", "adapter_config.json", "lineage.json", "metrics.jsonl",
                "train_config.json", "checkpoint"} <= set(os.listdir(f"out/{run}"))
    table = open("out/eval/results.md").read()
    assert "US-Tuning (stage 1 -> stage 2)" in table and "CHECKING well-formed" in table
    results = json.load(open("out/eval/results.json"))["results"]
    assert set(results) == {"base", "base_prefix", "stage1", "qa_only", "stage2"}  # the base row: the base the runs trained on
    assert all(m["n_rows"] == 6 and m["checking_well_formed"] is not None for m in results.values())


def test_a_stage0_base_is_an_ordinary_hf_checkpoint(micro_world):
    from transformers import LlamaForCausalLM
    from model import Llama
    ours = Llama.from_pretrained(micro_world["base"])
    ref = LlamaForCausalLM.from_pretrained(micro_world["base"]).eval()
    tokens = torch.randint(0, ours.args.vocab_size, (2, 40))
    with torch.no_grad():
        assert (ours(tokens) - ref(tokens).logits).abs().max().item() <= 1e-4
