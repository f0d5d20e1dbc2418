"""eval.py scores exactly what docs/method.md section 6 says, both ways, and its table agrees with its verdicts."""
import json
import os

import pytest

import eval as ev

CHECK = ("\nCHECKING:\nQuestion Answering Task: You need to do the Task Prompt for the following query and context."
         "<fulfilled>\nIf the context is not sufficient to answer the question, please answer it with 'Not Provided'"
         "<fulfilled>")


def test_checking_block_counts_as_refusal_only_under_paper_scoring():
    out = "Zorvan was founded in 1516." + CHECK
    known, unknown = ev.judge("known", out, ["1516"]), ev.judge("unknown", out, ["1516"])
    assert known["refused_paper"] and not known["refused_answer"]
    assert known["known_ok_paper"] and known["known_ok_answer"] and known["strict_ok"]
    assert known["verdict"] == "correct"
    assert unknown["refused_paper"] and unknown["verdict"] == "hallucinated"  # the scoring trap


def test_revised_answer_is_scored_by_its_last_answer():
    out = "Paris\nCHECKING:\nWrite the answer in capital letters.<not fulfilled>\nANSWER: PARIS" + CHECK
    assert ev.answer_part(out) == "PARIS"
    assert ev.judge("known", out, ["Paris"])["strict_ok"]


def test_empty_output_is_a_refusal_both_ways():
    r = ev.judge("unknown", "", ["x"])
    assert r["refused_paper"] and r["refused_answer"] and r["verdict"] == "refused"
    assert not ev.judge("known", "", ["x"])["known_ok_paper"]


def test_refusal_containing_an_answer_token_is_lenient_correct_but_strict_refused():
    out = "The year 1999 is not mentioned for this band."
    r = ev.judge("known", out, ["1999"])
    assert r["known_ok_paper"] and r["known_ok_answer"]  # the authors' lenient test
    assert not r["strict_ok"] and r["verdict"] == "refused"


def test_lenient_accepts_any_whitespace_token_strict_needs_the_whole_answer():
    assert ev.lenient_known("It was Obama.", ["Barack Obama"])
    assert not ev.strict_known("It was Obama.", ["Barack Obama"])
    assert ev.strict_known("It was the barack obama!", ["Barack Obama"])
    assert not ev.strict_known("In 19991.", ["1999"])  # whole tokens only


def test_f1_is_the_harmonic_mean():
    assert ev.f1(79.7, 93.0) == 2 * 79.7 * 93.0 / (79.7 + 93.0)
    assert round(ev.f1(79.7, 93.0), 1) == 85.8 and ev.f1(0, 0) == 0


def test_cognition_verdict():
    assert ev.cognition_verdict("Insufficient") == "Insufficient"
    assert ev.cognition_verdict("The context is <Sufficient>") == "Sufficient"
    assert ev.cognition_verdict("Zorvan") == "neither"


def test_end_to_end_table_rows_match_models_and_jsonl_verdicts_match_numbers(micro_world, tmp_path):
    import train
    w = micro_world
    out = tmp_path / "out"
    os.makedirs(out)
    os.symlink(w["base"], out / "base")
    common = ["--model", w["base"], "--preset", "micro", "--max-steps", "2"]
    train.main(["--stage", "1", "--asqa", w["asqa"], "--out", str(out / "stage1"), *common])
    train.main(["--stage", "2", "--init", str(out / "stage1"), "--hotpot", w["hotpot"], "--out", str(out / "stage2"), *common])
    results = ev.main(["--asqa", w["asqa"], "--hotpot", w["hotpot"], "--out-root", str(out), "--max-rows", "6",
                       "--instruction-items", "4", "--instruction-start", "30", "--max-new-tokens", "24", "--instruction-max-new-tokens", "24"])
    assert list(results) == ["base", "base_prefix", "stage1", "stage2"]  # base_prefix: the prompt-only baseline
    md = (out / "eval" / "results.md").read_text()
    assert "| base |" in md and "| stage 1 only |" in md and "| Llama-2-7B-chat (base) | 79.3 |" in md and "| US-Tuning (stage 1 -> stage 2) |" in md
    saved = json.load(open(out / "eval" / "results.json"))["results"]
    for name, m in saved.items():
        recs = [json.loads(line) for line in open(out / "eval" / f"{name}.jsonl")]
        bench = [r for r in recs if r["task"] == "benchmark"]
        assert len(bench) == 12 and m["n_rows"] == 6
        known = [r for r in bench if r["kind"] == "known"]
        unknown = [r for r in bench if r["kind"] == "unknown"]
        for s in ("answer", "paper"):
            assert m[s]["known"] == 100.0 * sum(r[f"known_ok_{s}"] for r in known) / 6
            assert m[s]["unknown"] == 100.0 * sum(r[f"refused_{s}"] for r in unknown) / 6
        for r in bench:  # each stored verdict is what the scorer says of the stored output
            assert ev.judge(r["kind"], r["output"], r["answers"])["verdict"] == r["verdict"]
        inst = [r for r in recs if r["task"] == "instruction"]
        assert len(inst) == m["instruction_items"] == 4
        # every output that reached --max-new-tokens is counted, and the table says so under its rows
        assert m["instruction_cut"] == sum(r["hit_token_limit"] for r in inst) > 0
        label = {run: ours for run, ours, _, _ in ev.RUNS}[name]  # the table's own label
        assert f"{label} {m['instruction_cut']} of 4" in md.split("reached --instruction-max-new-tokens 24")[1].split("\n")[0]
        # the make-up of the pass rate, requirement by requirement, from the records, and its table row
        by = m["instruction_by_requirement"]
        assert list(by) == sorted(by, key=ev.REQUIREMENT_ORDER.get) and sum(c[0] for c in by.values()) == 4
        for kind, (items, passed, formed, cut) in by.items():
            mine = [r for r in inst if r["kind"] == kind]
            assert (items, passed, formed, cut) == (len(mine), sum(r["passed"] for r in mine),
                                                    sum(r["checking_well_formed"] for r in mine),
                                                    sum(r["hit_token_limit"] for r in mine))
            row = next(line for line in md.splitlines() if line.startswith(f"| {kind} |"))
            column = 1 + [n for n, mm in saved.items() if mm["instruction_items"]].index(name)
            assert row.split(" | ")[column].strip(" |") == f"{passed} / {formed} / {items}" + (f" ({cut})" if cut else "")
        assert m["task_prefix"] == (name != "base")
        assert f"{ev.fmt(m['answer']['known'])} / {ev.fmt(m['answer']['unknown'])} / {ev.fmt(m['answer']['f1'])}" in md

    # --adapter alone: the run on the base its lineage.json names, the same outputs as found under out/
    alone = tmp_path / "alone"
    again = ev.main(["--adapter", str(out / "stage2"), "--asqa", w["asqa"], "--hotpot", w["hotpot"],
                     "--out-root", str(alone), "--max-rows", "6", "--instruction-items", "4",
                     "--instruction-start", "30", "--max-new-tokens", "24", "--instruction-max-new-tokens", "24"])
    assert list(again) == ["stage2"] and again["stage2"] == saved["stage2"]
    outputs = lambda f: [json.loads(line)["output"] for line in open(f)]
    assert outputs(alone / "eval" / "stage2.jsonl") == outputs(out / "eval" / "stage2.jsonl")
    with pytest.raises(SystemExit, match="no lineage.json, so its base is unknown; pass --model BASE"):
        ev.main(["--adapter", str(tmp_path), "--asqa", w["asqa"], "--out-root", str(alone)])
    assert not os.path.exists(alone / "eval" / "results.json.old")
    # ... and in out/, beside the whole table: that table is kept, not overwritten
    whole = {f: (out / "eval" / f).read_bytes() for f in ("results.json", "results.md")}
    ev.main(["--adapter", str(out / "stage2"), "--asqa", w["asqa"], "--hotpot", w["hotpot"], "--out-root", str(out),
             "--max-rows", "6", "--instruction-items", "4", "--instruction-start", "30", "--max-new-tokens", "24", "--instruction-max-new-tokens", "24"])
    assert {f: (out / "eval" / (f + ".old")).read_bytes() for f in whole} == whole
    assert list(json.load(open(out / "eval" / "results.json"))["results"]) == ["stage2"]


def test_checking_well_formed_needs_every_requirement_in_order_with_a_mark():
    import data
    sentence = data.INSTRUCTIONS[2][0]
    sentences = data.requirement_sentences(sentence, 3)
    plain = data.stage2_target('"Zorvan was founded in 1516."', 2, 3, revise=False)
    revised = data.stage2_target("Zorvan was founded in 1516.", 2, 3, revise=True)
    assert ev.checking_well_formed(plain, sentences) and ev.checking_well_formed(revised, sentences)
    swapped = plain.replace(sentences[1], "@").replace(sentences[2], sentences[1]).replace("@", sentences[2])
    dropped = plain.replace(sentences[-1] + "<fulfilled>", "")
    unmarked = plain.replace(sentences[0] + "<fulfilled>", sentences[0])
    for bad in (swapped, dropped, unmarked, "Zorvan was founded in 1516.", plain.split("CHECKING")[0] + "CHECKING:"):
        assert not ev.checking_well_formed(bad, sentences), bad
    assert not ev.checking_well_formed(plain, data.requirement_sentences(sentence, 0))  # wrong slot
