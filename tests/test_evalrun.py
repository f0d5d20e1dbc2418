"""eval.py runs in batches bounded by a token budget, appends each batch to <model>.jsonl, resumes an
interrupted run to the very same files, and cuts (never skips) a prompt longer than the model can continue."""
import json
import os
import random
import shutil

import pytest
import torch

import data
import eval as ev
from generate import generate, token_batches
from model import Llama, ModelArgs


def random_llama(seed=0):
    torch.manual_seed(seed)
    return Llama(ModelArgs(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=128, max_position_embeddings=256)).eval()


def random_prompts(n, seed=1):
    rng = random.Random(seed)
    return [[rng.randrange(3, 128) for _ in range(rng.randrange(1, 40))] for _ in range(n)]


def test_token_batches_cover_every_prompt_once_within_the_budget_shortest_first():
    lengths = [random.Random(0).randrange(1, 300) for _ in range(200)]
    batches = token_batches(lengths, 50, 2000)
    assert sorted(i for b in batches for i in b) == list(range(200))
    for b in batches:  # the cache a batch allocates: rows x (its longest prompt + new tokens)
        assert len(b) * (max(lengths[i] for i in b) + 50) <= 2000
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat) and len(batches) < 200  # similar lengths together, several per batch
    assert token_batches([500, 10], 50, 100) == [[1], [0]]  # one prompt over the budget still runs, alone


def test_token_budget_batches_give_the_outputs_of_one_prompt_at_a_time():
    model, prompts = random_llama(), random_prompts(12)
    free = generate(model, prompts, 16, eos_id=-1, batch_size=1)
    eos = free[0][3]  # some rows end early, others run to the limit
    alone = generate(model, prompts, 16, eos_id=eos, batch_size=1)
    assert any(len(t) < 16 for t in alone) and any(len(t) == 16 for t in alone)
    for budget in (60, 200, 10_000):
        assert generate(model, prompts, 16, eos_id=eos, batch_tokens=budget) == alone


def test_eos_checked_every_few_steps_gives_the_same_tokens_and_stops_at_the_next_check():
    model, prompts = random_llama(), random_prompts(6)
    free = generate(model, prompts, 20, eos_id=-1)
    eos = free[0][2]
    outs = {n: generate(model, prompts, 20, eos_id=eos, eos_every=n) for n in (1, 3, 8, 50)}
    assert outs[1] == outs[3] == outs[8] == outs[50]
    assert outs[1][0] == free[0][:free[0].index(eos)]
    calls = []
    hook = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        steps = {}
        for n in (1, 8):
            calls.clear()
            generate(model, prompts[:1], 20, eos_id=eos, eos_every=n)
            steps[n] = len(calls)  # the prompt's forward, then one per new token but the last
    finally:
        hook.remove()
    assert steps[1] == free[0].index(eos) + 1 and steps[8] == 8


def test_fit_cuts_the_end_of_the_context_as_training_does(micro_world):
    tok = data.Tokenizer(micro_world["base"])
    template = data.TEMPLATES["llama2"]
    context = " ".join(f"Passage sentence {k} about the band." for k in range(40))
    system, user = data.eval_messages("When was the band formed?", context, False)
    whole, cut_from = ev.fit(tok, template, user, context, None, system)
    assert cut_from is None
    ids, cut_from = ev.fit(tok, template, user, context, len(whole) // 2, system)
    assert cut_from == len(whole) and len(ids) <= len(whole) // 2
    text = tok.decode(ids)
    assert "Passage sentence 0 about" in text and "Passage sentence 39" not in text  # the end of the context went
    assert "When was the band formed?" in text and text.rstrip().endswith("[/INST]")  # question and opening kept
    tail, cut_from = ev.fit(tok, template, user, context, 5, system)  # no room even without a context
    assert tail == whole[-5:] and cut_from == len(whole)


def eval_argv(w, out, *extra):
    return ["--model", w["base"], "--asqa", w["asqa"], "--hotpot", w["hotpot"], "--max-rows", "3",
            "--instruction-items", "3", "--instruction-start", "30", "--max-new-tokens", "6", "--instruction-max-new-tokens", "6",
            "--batch-tokens", "700", "--out-root", str(out), *extra]


def test_interrupted_eval_reruns_to_byte_identical_files_and_skips_what_is_done(micro_world, tmp_path, monkeypatch):
    w, out = micro_world, tmp_path / "out"
    files = ("base.jsonl", "results.json", "results.md")
    ev.main(eval_argv(w, out))
    whole = {f: (out / "eval" / f).read_bytes() for f in files}
    n = len(whole["base.jsonl"].splitlines())
    rows = [r for r in data.build_benchmark(w["asqa"]) if r["split"] == "test"][:3]
    items = data.stage2_records(w["hotpot"], 3, start=30, seed=1)
    order = [ev.prompt_id(*p[:3]) for p in ev.model_prompts(data.Tokenizer(w["base"]), rows, items, False)]
    assert [json.loads(line)["prompt_id"] for line in whole["base.jsonl"].splitlines()] == order  # not batch order
    shutil.rmtree(out / "eval")

    assert ev.main(eval_argv(w, out, "--stop-after-batches", "2")) is None  # as if interrupted after 2 batches
    jsonl = out / "eval" / "base.jsonl"
    kept = jsonl.read_bytes().splitlines()
    assert 0 < len(kept) < n and not (out / "eval" / "results.json").exists()
    with open(jsonl, "ab") as f:  # and killed halfway through writing a third batch's first line
        f.write(whole["base.jsonl"].splitlines()[-1][:40])

    asked, real = [], ev.generate
    monkeypatch.setattr(ev, "generate", lambda model, prompts, *a, **k: asked.extend(prompts) or real(model, prompts, *a, **k))
    ev.main(eval_argv(w, out))
    assert {f: (out / "eval" / f).read_bytes() for f in files} == whole
    assert len(asked) == n - len(kept)  # only the prompts not yet answered ran

    monkeypatch.setattr(ev, "generate", lambda *a, **k: pytest.fail("a finished model was decoded again"))
    monkeypatch.setattr(ev, "load", lambda *a, **k: pytest.fail("a finished model was loaded again"))
    ev.main(eval_argv(w, out))
    assert {f: (out / "eval" / f).read_bytes() for f in files} == whole


def test_changed_settings_are_not_served_from_a_stale_jsonl(micro_world, tmp_path):
    w, out = micro_world, tmp_path / "out"
    ev.main(eval_argv(w, out))
    first = [json.loads(line) for line in open(out / "eval" / "base.jsonl")]
    ev.main(eval_argv(w, out)[:-2] + ["--max-new-tokens", "3", "--instruction-max-new-tokens", "3", "--out-root", str(out)])
    again = [json.loads(line) for line in open(out / "eval" / "base.jsonl")]
    assert [r["prompt_id"] for r in again] == [r["prompt_id"] for r in first]
    assert all(r["prompt_key"] != s["prompt_key"] for r, s in zip(again, first))
