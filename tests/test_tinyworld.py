"""The tiny world: deterministic raw files in the real schemas, and the whole pipeline on the micro preset."""
import json
import os
import shutil
import subprocess
import sys
import time

import torch

import data
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
    base = data.base_records(files["base_corpus.jsonl"])
    plain = [r for r in base if r["context"] and not any(q in r["prompt"] for q, _ in tinyworld.FORMAT_REQUESTS)]
    assert len(plain) >= 10 and all(r["output"] in r["context"] for r in plain)  # every question is answerable


def test_stage0_teaches_general_skills_but_none_of_the_us_tuning_tasks(tmp_path):
    """The base may read, copy and follow format requests of its own pools (stage 0's, and CHAT_REQUESTS: stage
    2's formats asked in other words), like a chat model; it never sees
    a Sufficient/Insufficient judgement, a 'Not Provided' reply, a CHECKING review, the stage-1 or stage-2
    prompt, or a sentence of the stage-2 instruction pool. (The evaluation prompt's TASK_ASSIGNMENT_PREFIX
    names the Cognition Assessment Task; it is part of the prompt a chat model is asked, not a task.)"""
    files = tinyworld.write(str(tmp_path), seed=0, names=40, asqa_names=10, hotpot_items=20, corpus_draws=1200,
                            copies=300, requests=100, request_phase=100)  # with random copies, requests and the
    # request phase (--copy-steps, --list-steps, --requests, --request-phase)
    base = data.base_records(files["base_corpus.jsonl"])
    kinds = {"eval": 0, "qa": 0, "request": 0, "copy": 0, "several passages": 0, "phase 0": 0}
    for r in base:
        assert not any(w in r["output"].lower() for w in ("sufficient", "not provided", "checking", "fulfilled"))
        assert not any(s in r["prompt"] or s in r["output"] for s, _, _ in data.INSTRUCTIONS)
        assert data.TASK_COGNITION[:60] not in r["prompt"] and data.TASK_PROMPT[:60] not in r["prompt"]
        assert "CHECKING" not in r["prompt"]
        kinds["eval" if r.get("format") == "raw" else "qa" if r["context"] else "copy"] += 1
        kinds["request"] += any(q in r["prompt"] for q, _ in tinyworld.FORMAT_REQUESTS)
        kinds["several passages"] += r["context"].count("This is a passage about") > 1
        kinds["phase 0"] += r["phase"] == 0
    assert min(kinds.values()) >= 20, kinds


def test_random_copies_come_last_copy_their_prompt_and_leave_the_rest_as_it_was(tmp_path):
    """--copies appends random copies from a stream of their own: every other byte of the world is the same.
    Phase 0: a run of 10-40 words right before the reply; phase 3: listings only, of random sentences or of
    COPY_ENGLISH's; phases 1-2 every shape: runs, runs with paragraphs after them, both listings, whose lines
    are the prompt's sentences in order. No word of the method in any of them."""
    sizes = dict(seed=0, names=30, asqa_names=10, hotpot_items=12, corpus_draws=60, polish_draws=60)
    plain, copies = (tinyworld.write(str(tmp_path / d), copies=n, **sizes) for d, n in (("a", 0), ("b", 400)))
    for name in plain:
        a, b = (open(f[name]).read() for f in (plain, copies))
        assert b.startswith(a) and (a == b) == (name != "base_corpus.jsonl"), name
    extra = [json.loads(line) for line in open(copies["base_corpus.jsonl"]).read()[len(open(plain[
        "base_corpus.jsonl"]).read()):].splitlines()]
    by_phase = {n: [r for r in extra if r["phase"] == n] for n in (0, 1, 2, 3)}
    assert len(by_phase[0]) == len(by_phase[1]) == 400 and 60 < len(by_phase[2]) < 140
    assert 240 < len(by_phase[3]) < 360 and len(extra) == sum(map(len, by_phase.values()))
    shapes = set()
    for r in extra:
        request, text = r["instruction"].split("\n\n", 1)
        lines = r["output"].split("\n")
        assert text.startswith(" ".join(lines)), r  # the reply is the first part of the text, one sentence a line
        listing, after = len(lines) > 1, text != " ".join(lines)
        english = listing and all(line in tinyworld.COPY_ENGLISH for line in lines)
        assert request == (tinyworld.FIRST_PART_REQUEST if after else tinyworld.COPY_REQUEST)
        if listing and not english:
            assert all(len(line.split()) in range(3, 9) and line[0].isupper() and line.endswith(".") for line in lines)
        elif not listing:
            assert len(lines[0].split()) in range(10, 41)
        assert not any(m in r["instruction"].lower() for m in tinyworld.METHOD_WORDS)
        assert (r["phase"] == 0) <= (not listing and not after)  # phase 0: runs right before the reply only
        assert (r["phase"] == 3) <= listing  # phase 3: listings only
        shapes.add((r["phase"], listing, english, after))
    runs = {(0, False, False, False)}
    listings = {(3, True, english, after) for english in (False, True) for after in (False, True)}
    later = {(n, listing, english, after) for n in (1, 2) for listing, english, after in
             [(False, False, False), (False, False, True)] + [(True, e, a) for e in (False, True) for a in (False, True)]}
    assert shapes == runs | listings | later


def appended(tmp_path, flag, n, **sizes):
    """Write the world without and with `flag`=n: every file but the corpus the same, the corpus the same
    lines and then the appended ones, returned as read by data.base_records and as raw JSON."""
    plain, more = (tinyworld.write(str(tmp_path / d), **{flag: k}, **sizes) for d, k in (("a", 0), ("b", n)))
    for name in plain:
        a, b = (open(f[name]).read() for f in (plain, more))
        assert b.startswith(a) and (a == b) == (name != "base_corpus.jsonl"), name
    n_plain = len(open(plain["base_corpus.jsonl"]).read().splitlines())
    extra = data.base_records(more["base_corpus.jsonl"])[n_plain:]
    raw = [json.loads(line) for line in open(more["base_corpus.jsonl"]).read().splitlines()[n_plain:]]
    assert len(extra) == len(raw) == n
    return extra, raw


def test_request_records_come_last_and_apply_a_request_of_stage0s_pool(tmp_path):
    """--requests appends questions in TASK_QA after the random copies, from a stream of their own: every other
    byte is the same. Each carries a format request of stage 0's own pool in one of the five slots, and its
    answer is the passage's sentence with that request applied; it asks over one passage, or over ten
    paragraphs (nine about other names) about a quarter of the time."""
    extra, raw = appended(tmp_path, "requests", 400, seed=0, names=30, asqa_names=10, hotpot_items=12,
                          corpus_draws=60, polish_draws=60, copies=50)
    pool, ten, used = dict(tinyworld.FORMAT_REQUESTS), 0, set()
    for rec, r in zip(raw, extra):
        assert rec["template"] == "qa" and r["phase"] == 1 and "phase" not in rec
        assert rec["slot"] in range(5) and rec["request"] in r["prompt"] and r["output"] == rec["answer"]
        sentences = [[s + "." for s in p.rstrip(".").split(". ")] for _, p in rec["passages"]]
        holding = [ss for ss in sentences if any(pool[rec["request"]](s) == rec["answer"] for s in ss)]
        assert len(holding) == 1, rec  # one passage says the answer's fact, and the answer is it, formatted
        assert len(sentences) in (1, 10) and len({ss[0].split(" is a ")[0] for ss in sentences}) == len(sentences)
        ten += len(sentences) == 10
        used.add(rec["request"])
        assert not any(m in r["output"].lower() for m in tinyworld.METHOD_WORDS) and "CHECKING" not in r["prompt"]
        assert not any(s in r["prompt"] for s, _, _ in data.INSTRUCTIONS)
    assert 60 < ten < 140 and used == set(pool)


def test_request_phase_records_come_last_half_questions_half_requests_of_both_pools(tmp_path):
    """--request-phase appends "phase": 4 records after the requests, from a stream of their own: every other
    byte is the same. Per draw, a polish-phase question over one passage (half) or a TASK_QA question with a
    request of stage 0's own pool or of CHAT_REQUESTS, whose answer is the passage's sentence with the request
    applied (half). CHAT_REQUESTS asks for stage 2's formats (the same operations, in data.INSTRUCTIONS' order)
    in other words: none of its sentences, and no stage-2 sentence, appears in a record."""
    extra, raw = appended(tmp_path, "request_phase", 600, seed=0, names=30, asqa_names=10, hotpot_items=12,
                          corpus_draws=60, polish_draws=60, copies=50, requests=30)
    assert all(r["phase"] == 4 for r in extra)
    stage2 = [s for s, _, _ in data.INSTRUCTIONS]
    assert [op("Vobese was founded in 1818.") for _, op in tinyworld.CHAT_REQUESTS] == [
        op("Vobese was founded in 1818.") for _, op, _ in data.INSTRUCTIONS]
    assert not {s for s, _ in tinyworld.CHAT_REQUESTS} & set(stage2)
    pool, used, plain_questions = dict(tinyworld.REQUEST_PHASE_POOL), set(), 0
    for rec, r in zip(raw, extra):
        assert not any(s in r["prompt"] or s in r["output"] for s in stage2) and "CHECKING" not in r["prompt"]
        assert not any(m in r["output"].lower() for m in tinyworld.METHOD_WORDS)
        if "request" not in rec:
            plain_questions += 1  # a polish-phase draw: a question, or now and then (COPY_SHARE) a copy
            continue
        sentences = [[s + "." for s in p.rstrip(".").split(". ")] for _, p in rec["passages"]]
        assert sum(any(pool[rec["request"]](s) == rec["answer"] for s in ss) for ss in sentences) == 1, rec
        assert rec["request"] in r["prompt"] and r["output"] == rec["answer"]
        used.add(rec["request"])
    assert 240 < plain_questions < 360 and used == set(pool)


def test_case_drills_come_last_and_rewrite_world_texts_in_capitals_or_small_letters(tmp_path):
    """--case-drills appends "phase": 4 records after the request phase, from a stream of their own: every other
    byte is the same. Per draw, a world text (a passage, or one of its sentences, about a name of the world)
    rewritten in capitals or small letters (about 3 in 4), or a TASK_QA question with the CHAT_REQUESTS that ask
    for the same. No stage-2 sentence and no method word appears."""
    extra, raw = appended(tmp_path, "case_drills", 400, seed=0, names=30, asqa_names=10, hotpot_items=12,
                          corpus_draws=60, polish_draws=60, copies=50, requests=30, request_phase=40)
    names = tinyworld.generate(seed=0, names=30, asqa_names=10, hotpot_items=12, corpus_draws=1, polish_draws=1,
                               avoid=tinyworld.fixed_text())[3]
    stage2, ops = [s for s, _, _ in data.INSTRUCTIONS], dict(tinyworld.CASE_REQUESTS)
    chat = dict(tinyworld.CHAT_REQUESTS[:2])
    texts = {op: 0 for op in ops.values()}
    for rec, r in zip(raw, extra):
        assert r["phase"] == 4 and not any(s in r["prompt"] or s in r["output"] for s in stage2)
        assert not any(m in r["output"].lower() for m in tinyworld.METHOD_WORDS)
        if "instruction" in rec:  # (TASK_QA's own words, "...not sufficient...", are in every question's prompt)
            assert not any(m in rec["instruction"].lower() for m in tinyworld.METHOD_WORDS)
            request, text = rec["instruction"].split("\n\n")
            assert text.split()[0] in names and rec["output"] == ops[request](text) != text
            texts[ops[request]] += 1
        else:
            sentences = [s + "." for _, p in rec["passages"] for s in p.rstrip(".").split(". ")]
            assert rec["request"] in r["prompt"] and r["output"] == rec["answer"]
            assert sum(chat[rec["request"]](s) == rec["answer"] for s in sentences) == 1, rec
    assert all(n > 100 for n in texts.values()) and 60 < 400 - sum(texts.values()) < 140


def test_more_items_are_new_stage2_training_items_never_the_held_out_ones(tmp_path):
    """--more-items adds hotpot_more.json and changes no other byte: stage 2's training items (the first 300,
    train.py's --n-items default), then new items drawn as the world draws its own from a stream of their own,
    ids on from the world's last. eval.py's held-out items (300-399, its --instruction-start) are not in it."""
    sizes = dict(seed=0, names=30, asqa_names=10, hotpot_items=400, corpus_draws=20, polish_draws=20)
    plain, more = (tinyworld.write(str(tmp_path / d), more_items=k, **sizes) for d, k in (("a", 0), ("b", 50)))
    assert set(more) - set(plain) == {"hotpot_more.json"}
    for name in plain:
        assert open(plain[name], "rb").read() == open(more[name], "rb").read(), name
    held, extra = (json.load(open(p)) for p in (plain["hotpot_train_v1.1.json"], more["hotpot_more.json"]))
    assert ev.EvalConfig.instruction_start == tinyworld.TRAIN_ITEMS == train.TrainConfig.n_items == 300
    assert extra[:300] == held[:300] and len(extra) == 350
    assert [x["_id"] for x in extra[300:]] == [f"tiny{k:05d}" for k in range(400, 450)]
    assert not any(x["context"] == h["context"] for x in extra[300:] for h in held[300:])
    names = set(open(plain["world_words.txt"]).read().split())
    assert all(p[0].split()[0] in names for x in extra[300:] for p in x["context"])
    assert len(data.stage2_records(more["hotpot_more.json"], 350)) == 350  # stage 2 reads every item


def test_whole_pipeline_on_the_micro_preset(tmp_path, monkeypatch):
    """The README's demo, in order, from a directory holding only the shipped base: the world is written,
    stage 1 -> stage 2 -> eval (micro-sized steps and rows), then the ablation rows."""
    import eval as ev
    import train
    shutil.copytree(os.path.join(ROOT, tinyworld.BASE), tmp_path / tinyworld.BASE,
                    ignore=shutil.ignore_patterns("checkpoint"))
    monkeypatch.chdir(tmp_path)
    t0 = time.time()
    train.main(["--stage", "1", "--preset", "micro"])  # writes data/tiny first: nothing else exists yet
    train.main(["--stage", "2", "--init", "out/stage1", "--preset", "micro"])
    train.main(["--stage", "2", "--data", "qa", "--preset", "micro"])
    ev.main(["--max-rows", "6", "--instruction-items", "3", "--max-new-tokens", "24"])
    assert time.time() - t0 < 240
    assert sorted(os.listdir("data/tiny")) == ["ASQA.json", "base_corpus.jsonl", "hotpot_train_v1.1.json",
                                               "world_words.txt"]
    for run in ("stage1", "stage2", "qa_only"):
        assert {"adapter_model.safetensors", "adapter_config.json", "lineage.json", "metrics.jsonl",
                "train_config.json", "checkpoint"} <= set(os.listdir(f"out/{run}"))
    table = open("out/eval/results.md").read()
    assert "US-Tuning (stage 1 -> stage 2)" in table and "CHECKING well-formed" in table
    results = json.load(open("out/eval/results.json"))["results"]
    assert set(results) == {"base", "stage1", "qa_only", "stage2"}  # the base row: the base the runs trained on
    assert all(m["n_rows"] == 6 and m["checking_well_formed"] is not None for m in results.values())


def test_a_stage0_base_is_an_ordinary_hf_checkpoint(micro_world):
    from transformers import LlamaForCausalLM
    from model import Llama
    ours = Llama.from_pretrained(micro_world["base"])
    ref = LlamaForCausalLM.from_pretrained(micro_world["base"]).eval()
    tokens = torch.randint(0, ours.args.vocab_size, (2, 40))
    with torch.no_grad():
        assert (ours(tokens) - ref(tokens).logits).abs().max().item() <= 1e-4
