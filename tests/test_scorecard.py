"""scorecard.py: the two-sided refusal scorecard, its bootstrap over ASQA records and the paired difference; the
baselines: the refusal-SFT data (eval's own prompts), its training run, and the prompt-only row of eval."""
import dataclasses
import json
import os
import random

import pytest

import data
import eval as ev
import scorecard as sc
import train


def rec(asqa, row, kind, ok=False, refused=False):
    """A benchmark record as eval.py writes it (the fields the scorecard reads)."""
    return {"task": "benchmark", "id": f"{asqa}-{row}-{row + 1}", "asqa_id": asqa, "kind": kind,
            "known_ok_answer": ok, "refused_answer": refused, "known_ok_paper": ok, "refused_paper": refused,
            "strict_ok": ok, "verdict": "refused" if refused else "correct" if kind == "known" and ok else "wrong"
            if kind == "known" else "hallucinated"}


def rows(asqa, row, known, unknown):
    """The two records of one row: known (ok, refused), unknown refused."""
    return [rec(asqa, row, "known", *known), rec(asqa, row, "unknown", refused=unknown)]


def synthetic(n_records, rows_per_record=3, seed=0):
    """Records of n ASQA records: known correct 70%, known refused 10%, unknown refused 60%."""
    rng, out = random.Random(seed), []
    for a in range(n_records):
        for r in range(rows_per_record):
            refused = rng.random() < 0.1
            out += rows(f"-{a}x", r, (not refused and rng.random() < 0.78, refused), rng.random() < 0.6)
    return out


HAND = (rows("a", 0, (True, False), True) + rows("a", 1, (False, True), True)
        + rows("b", 0, (False, True), False) + rows("b", 1, (False, False), True))


def test_scorecard_on_hand_made_records_is_exact():
    # TP 3 (unknown refused), FP 2 (known refused), FN 1 (unknown answered); known accuracy 1 of 4
    c = sc.scorecard(HAND, n=50)
    assert (c["refusal_precision"], c["refusal_recall"]) == (60.0, 75.0)
    assert c["refusal_f1"] == pytest.approx(2 * 60 * 75 / 135)
    assert (c["over_refusal"], c["hallucination"], c["f1"]) == (50.0, 25.0, 37.5)
    assert (c["asqa_records"], c["rows"], c["bootstrap"], c["seed"]) == (2, 4, 50, 0)
    paper = ev.score_benchmark(HAND)["answer"]  # the paper's F1 and unknown accuracy, as eval's table has them
    assert c["f1"] == paper["f1"] and c["refusal_recall"] == paper["unknown"]


def test_refusing_everything_and_never_refusing():
    every = [r for a in range(3) for r in rows(str(a), 0, (False, True), True)]
    c = sc.scorecard(every, n=20)
    assert (c["refusal_recall"], c["over_refusal"], c["refusal_precision"], c["hallucination"], c["f1"]) == \
        (100.0, 100.0, 50.0, 0.0, 0.0)
    never = [r for a in range(3) for r in rows(str(a), 0, (True, False), False)]
    c = sc.scorecard(never, n=20)
    assert (c["refusal_recall"], c["refusal_precision"], c["over_refusal"], c["hallucination"], c["f1"]) == \
        (0.0, 0.0, 0.0, 100.0, 0.0)


def test_bootstrap_is_seeded_holds_its_point_and_narrows_with_more_records():
    recs = synthetic(40)
    a, b, other = sc.scorecard(recs, seed=3), sc.scorecard(recs, seed=3), sc.scorecard(recs, seed=4)
    assert a == b and a["f1_ci"] != other["f1_ci"]
    for key in ("f1", "refusal_f1"):
        low, high = a[key + "_ci"]
        assert low < a[key] < high
    width = lambda c, k: c[k + "_ci"][1] - c[k + "_ci"][0]
    big = sc.scorecard(synthetic(640))
    assert width(big, "f1") < 0.5 * width(a, "f1") and width(big, "refusal_f1") < 0.5 * width(a, "refusal_f1")


def test_bootstrap_resamples_asqa_records_not_rows():
    # every row of a record answers alike: 10 independent units, not 100 rows
    recs = [r for a in range(10) for i in range(10) for r in rows(f"r{a}", i, (a % 2 == 0, a % 3 == 0), a < 6)]
    per_row = [dict(r, asqa_id=f"{r['asqa_id']}/{r['id']}") for r in recs]  # each row its own record
    grouped, loose = sc.scorecard(recs), sc.scorecard(per_row)
    assert grouped["f1"] == loose["f1"] and (grouped["asqa_records"], loose["asqa_records"]) == (10, 100)
    assert grouped["f1_ci"][1] - grouped["f1_ci"][0] > 2 * (loose["f1_ci"][1] - loose["f1_ci"][0])
    # a record from before eval.py wrote asqa_id is grouped by its row id, with the same result
    assert sc.scorecard([{k: v for k, v in r.items() if k != "asqa_id"} for r in recs]) == grouped


def test_paired_difference():
    base = synthetic(30, seed=1)
    better = [dict(r, refused_answer=True) if r["kind"] == "unknown" and int(r["asqa_id"][1:-1]) % 3 == 0 else r
              for r in base]  # a third of the records: every unknown question refused
    d = sc.f1_difference(better, base, n=300, seed=5)
    assert d["f1_diff"] == sc.scorecard(better, 1)["f1"] - sc.scorecard(base, 1)["f1"] > 0
    assert d["f1_diff_ci"][0] < d["f1_diff"] < d["f1_diff_ci"][1]
    # paired: each draw's difference is of the same records, so a model against itself differs by exactly 0
    assert sc.f1_difference(base, base, n=300) == {"f1_diff": 0.0, "f1_diff_ci": [0.0, 0.0]}
    mine, theirs = sc.resampled(sc.group(better), 300, 5), sc.resampled(sc.group(base), 300, 5)
    assert d["f1_diff_ci"] == sc.interval([a["f1"] - b["f1"] for a, b in zip(mine, theirs)])
    assert sc.differences({"base": base, "better": better}, 300, 5) == {"better": d}
    assert sc.differences({"better": better}) == {}  # no base row: nothing to pair with
    with pytest.raises(ValueError, match="same ASQA records"):
        sc.f1_difference(better[:-6], base)


def test_asqa_id_inverts_the_benchmark_row_id(micro_world):
    built = data.build_benchmark(micro_world["asqa"])
    assert all(sc.asqa_id(r["id"]) == r["asqa_id"] for r in built)
    assert sc.asqa_id("-123-4-0-1") == "-123-4"  # ASQA ids may hold dashes


def test_refusal_records_are_evals_prompts_with_the_answer_or_not_provided(micro_world):
    built = data.build_benchmark(micro_world["asqa"])
    train_rows = [r for r in built if r["split"] == "train"]
    recs = data.refusal_records(built, 10)
    assert len(recs) == 10 and len(data.refusal_records(built, 10**6)) == 2 * len(train_rows)
    tok = data.Tokenizer(micro_world["base"])
    for k, r in enumerate(recs):
        row, kind = train_rows[k // 2], ("known", "unknown")[k % 2]
        assert r["id"] == f"{row['id']}-{kind}"
        assert r["output"] == (row["known_answers"][0] if kind == "known" else "Not Provided")
        for name in ("chatml", "llama2"):  # what eval feeds a fine-tuned model, system message included
            template = data.TEMPLATES[name]
            asked = [p for p in ev.model_prompts(tok, [row], [], True, template) if p[0] == "benchmark"]
            eval_ids = next(p[3] for p in asked if p[2] == kind)
            assert data.encode_chat(tok, r["prompt"], template=template, system=r["system"])[0] == eval_ids
        # and what training tokenizes (llama2: this sentencepiece tokenizer has no chatml end-of-turn token)
        (ids, labels), = data.tokenize_records(tok, [r], 1024)[0]
        assert ids[:len(eval_ids)] == eval_ids and all(x == -100 for x in labels[:len(eval_ids)])
        assert tok.decode(ids[len(eval_ids):]).strip() == r["output"]
        assert all(x != -100 for x in labels[len(eval_ids):])


def test_train_data_refusal_has_stage1s_budget_and_trains(micro_world, tmp_path, capsys):
    given = train.parse_config(["--data", "refusal"])
    assert given.out == os.path.join("out", "refusal_sft") and given.preset == "tiny"
    stage1 = dataclasses.asdict(train.parse_config(["--stage", "1"]))
    assert {k: v for k, v in dataclasses.asdict(given).items() if stage1[k] != v} == \
        {"data": "refusal", "out": given.out}  # the same preset values as stage 1's
    for bad in (["--stage", "2", "--data", "refusal"], ["--data", "refusal", "--init", "out/stage1"]):
        with pytest.raises(SystemExit, match="refusal-SFT baseline"):
            train.parse_config(bad)
    with pytest.raises(SystemExit):
        train.parse_config(["--help"])
    assert "refusal (stage 1's baseline" in " ".join(capsys.readouterr().out.split())
    w, out = micro_world, str(tmp_path / "refusal_sft")
    argv = ["--data", "refusal", "--model", w["base"], "--asqa", w["asqa"], "--out", out, "--preset", "micro",
            "--max-records", "16"]
    cfg = train.parse_config(argv)
    assert train.build_records(cfg) == data.refusal_records(data.build_benchmark(w["asqa"]), 16)
    train.main(argv)
    saved = json.load(open(os.path.join(out, "train_config.json")))
    assert saved["data"] == "refusal" and saved["lr"] == train.PRESETS["micro"][1]["lr"]
    steps = [m for m in map(json.loads, open(os.path.join(out, "metrics.jsonl"))) if "loss" in m]
    assert len(steps) == train.PRESETS["micro"][1]["max_steps"]
    assert os.path.isfile(os.path.join(out, "adapter_model.safetensors"))


def test_eval_rows_baselines_and_scorecard_recomputed_from_jsonl(micro_world, tmp_path):
    w, out = micro_world, tmp_path / "out"
    os.makedirs(out)
    os.symlink(w["base"], out / "base")
    train.main(["--data", "refusal", "--model", w["base"], "--asqa", w["asqa"], "--out", str(out / "refusal_sft"),
                "--preset", "micro", "--max-steps", "2", "--max-records", "8"])
    results = ev.main(["--asqa", w["asqa"], "--out-root", str(out), "--max-rows", "8", "--instruction-items", "0",
                       "--max-new-tokens", "6", "--instruction-max-new-tokens", "6", "--bootstrap", "200", "--seed", "7"])
    assert list(results) == ["base", "base_prefix", "refusal_sft"]
    assert [results[n]["task_prefix"] for n in results] == [False, True, True]
    prompt = lambda n: next(json.loads(line) for line in open(out / "eval" / f"{n}.jsonl"))["prompt_key"]
    assert prompt("base") != prompt("base_prefix")  # another prompt, not the base's answers again
    saved = json.load(open(out / "eval" / "results.json"))
    diffs = saved["f1_difference_from_base"]
    assert list(diffs) == ["base_prefix", "refusal_sft"]
    md = (out / "eval" / "results.md").read_text()
    for name, m in saved["results"].items():
        jsonl = out / "eval" / f"{name}.jsonl"
        card = m["scorecard"]
        assert (card["bootstrap"], card["seed"], card["rows"]) == (200, 7, 8)
        assert sc.recompute(str(jsonl), 200, 7) == card == results[name]["scorecard"]
        assert card["f1"] == m["answer"]["f1"]
        if name != "base":
            again = sc.recompute(str(jsonl), 200, 7, str(out / "eval" / "base.jsonl"))
            assert {k: again[k] for k in ("f1_diff", "f1_diff_ci")} == diffs[name]
        label = {n: ours for n, ours, _, _ in ev.RUNS}[name]
        row = next(line for line in md.splitlines() if line.startswith(f"| {label} | {card['f1']:.1f} ["))
        assert f"[{card['refusal_f1_ci'][0]:.1f}, {card['refusal_f1_ci'][1]:.1f}]" in row
        old = tmp_path / f"{name}.old.jsonl"  # a file from before eval.py wrote asqa_id: the same scorecard
        old.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "asqa_id"}) + "\n" for r in sc.read(jsonl)))
        assert sc.recompute(str(old), 200, 7) == card
