"""The tiny world: deterministic raw files in the real schemas, and the whole pipeline on the micro preset."""
import json
import os
import time

import torch

import data
import tinyworld


def test_same_seed_same_bytes_other_seed_other_world(tmp_path):
    a, b, c = (tinyworld.write(str(tmp_path / d), seed=s, asqa_names=20, hotpot_items=30, corpus_names=10)
               for d, s in (("a", 0), ("b", 0), ("c", 1)))
    for name in a:
        assert open(a[name], "rb").read() == open(b[name], "rb").read()
        assert open(a[name], "rb").read() != open(c[name], "rb").read()


def test_builders_consume_the_world_with_nothing_skipped(tmp_path):
    files = tinyworld.write(str(tmp_path), seed=0, asqa_names=40, hotpot_items=30, corpus_names=10)
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
    base = data.base_records(files["base_corpus.jsonl"])
    assert len(base) == 10 * 2 * 2 and all(r["output"] in r["context"] for r in base)  # names x facts x formats


def test_whole_pipeline_on_the_micro_preset(tmp_path, monkeypatch):
    """The README's commands, in order, from an empty directory: data -> stage 0 -> 1 -> 2 -> eval."""
    import eval as ev
    import train
    from transformers import LlamaForCausalLM
    from model import Llama
    monkeypatch.chdir(tmp_path)
    t0 = time.time()
    train.main(["--stage", "0", "--preset", "micro"])  # writes data/tiny first: nothing exists yet
    train.main(["--stage", "1", "--preset", "micro"])
    train.main(["--stage", "2", "--init", "out/stage1", "--preset", "micro"])
    ev.main(["--max-rows", "8", "--instruction-items", "4", "--max-new-tokens", "32"])
    assert time.time() - t0 < 180
    assert sorted(os.listdir("data/tiny")) == ["ASQA.json", "base_corpus.jsonl", "hotpot_train_v1.1.json"]
    assert {"config.json", "model.safetensors", "tokenizer.model", "train_config.json"} <= set(os.listdir("out/base"))
    for run in ("stage1", "stage2"):
        assert {"adapter_model.safetensors", "adapter_config.json", "lineage.json", "metrics.jsonl",
                "train_config.json", "checkpoint"} <= set(os.listdir(f"out/{run}"))
    table = open("out/eval/results.md").read()
    assert table.count("\n| ") >= 3 and "US-Tuning (stage 1 -> stage 2)" in table
    assert set(json.load(open("out/eval/results.json"))["results"]) == {"base", "stage1", "stage2"}
    # the stage-0 base is an ordinary HF checkpoint
    ours = Llama.from_pretrained("out/base")
    ref = LlamaForCausalLM.from_pretrained("out/base").eval()
    tokens = torch.randint(0, ours.args.vocab_size, (2, 40))
    with torch.no_grad():
        assert (ours(tokens) - ref(tokens).logits).abs().max().item() <= 1e-4
