"""data.py builds the paper's datasets from raw ASQA / HotpotQA records exactly as docs/method.md sections 2-4 describe."""
import json
import os

import pytest

import data
from data import (INSTRUCTIONS, REQUIREMENTS, TASK_COGNITION, TASK_PROMPT, build_benchmark, collate, fill,
                  instruction_prompt, qa_records, stage1_records, stage2_records, stage2_target, tokenize_records)
from tokenizer import DataError, Tokenizer, encode_chat

# The authors' prompt texts as the project received them (a copy of shared/paper/prompts.json, vendored
# so that a user's clone can run this test).
PAPER_PROMPTS = os.path.join(os.path.dirname(__file__), "paper_prompts.json")


def qa(context, question, answers, wikipage):
    return dict(context=context, question=question, short_answers=answers, wikipage=wikipage)


ROME = {"ambiguous_question": "When was Rome formed?", "sample_id": "1", "wikipages": [], "annotations": [],
        "qa_pairs": [
            qa("Rome band was formed in 1999, says an old draft.", "When was the band Rome formed?", ["1999"],
               "Rome (band)"),
            qa("No context provided", "When did Rome fall?", ["476"], None),
            qa("Rome painter was born in 1950.", "When was the painter Rome born?", ["1950"], "Rome (painter)"),
            qa("Rome city grew in 1950 and 1700.", "When was the city Rome founded?", ["1700"], "Rome (city)"),
            qa("Rome band was formed in 1999, says an old draft.", "When did the band Rome form?", ["1999"],
               "Rome (band)"),  # same context: replaces the first pair, keeps its place
            qa("Rome museum opened.", "When did the museum open?", ["1888"], None),  # null wikipage: skipped
        ]}
SOLO = {"qa_pairs": [qa("Only one passage here 12.", "When?", ["12"], "Solo")]}


def write_asqa(tmp_path, train):
    path = str(tmp_path / "ASQA.json")
    with open(path, "w") as f:
        json.dump({"train": train, "dev": {}}, f)
    return path


def test_prompts_are_the_authors_texts_exactly():
    with open(PAPER_PROMPTS) as f:
        paper = json.load(f)
    for name in ("TASK_COGNITION", "TASK_QA", "TASK_PROMPT", "LLAMA2_CHAT_EVAL", "TASK_ASSIGNMENT_PREFIX",
                 "ASQA_CONTEXT_HEADER", "REFUSAL", "STAGE1_TARGETS"):
        assert getattr(data, name) == paper[name], name
    assert list(data.NEG_WORDS_V3) == paper["NEG_WORDS_V3"]


def test_benchmark_rows_are_ordered_permutations_with_the_authors_filter(tmp_path):
    stats = {}
    rows = build_benchmark(write_asqa(tmp_path, {"rome": ROME, "solo": SOLO}), stats=stats)
    got = [(r["known_question"], r["unknown_question"]) for r in rows]
    band, painter, city = ("When did the band Rome form?", "When was the painter Rome born?",
                           "When was the city Rome founded?")
    # (painter, city) is dropped: the painter's answer 1950 also appears in the city passage.
    assert got == [(band, painter), (band, city), (painter, band), (city, band), (city, painter)]
    first = rows[0]
    assert first["context"] == "This is a passage about Rome (band):\nRome band was formed in 1999, says an old draft."
    assert first["known_answers"] == ["1999"] and first["id"] == "rome-0-1"
    assert stats["pairs_no_context"] == 1 and stats["pairs_no_wikipage"] == 1
    assert stats["permutations"] == 6 and stats["dropped_by_filter"] == 1 and stats["records_kept"] == 1


def test_strict_filter_also_drops_rows_whose_unknown_answer_is_in_the_passage(tmp_path):
    rows = build_benchmark(write_asqa(tmp_path, {"rome": ROME}), filter="strict")
    # (city, painter) goes too: the painter's answer 1950 is in the city passage, so it is not unknown there.
    assert [(r["id"]) for r in rows] == ["rome-0-1", "rome-0-2", "rome-1-0", "rome-2-0"]


def test_split_is_by_asqa_record_so_no_record_is_on_both_sides(tmp_path):
    train = {f"q{k}": ROME for k in range(40)}
    rows = build_benchmark(write_asqa(tmp_path, train))
    sides = {}
    for r in rows:
        sides.setdefault(r["asqa_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in sides.values())
    counts = [sum(r["split"] == s for r in rows) for s in ("train", "test")]
    assert min(counts) > 0.25 * len(rows)
    assert rows == build_benchmark(write_asqa(tmp_path, train))  # deterministic, seedless


def test_stage1_targets_are_sufficient_then_insufficient(tmp_path):
    rows = build_benchmark(write_asqa(tmp_path, {f"q{k}": ROME for k in range(10)}))
    recs = stage1_records(rows)
    train_rows = [r for r in rows if r["split"] == "train"]
    assert len(recs) == 2 * len(train_rows)
    for row, known, unknown in zip(train_rows, recs[::2], recs[1::2]):
        assert known["output"] == "Sufficient" and unknown["output"] == "Insufficient"
        assert known["prompt"] == TASK_COGNITION.replace("{query}", row["known_question"]).replace(
            "{context}", row["context"])
        assert unknown["prompt"] == TASK_COGNITION.replace("{query}", row["unknown_question"]).replace(
            "{context}", row["context"])
    assert len(stage1_records(rows, max_records=3)) == 3


def test_fill_is_plain_replacement_so_braces_in_passages_survive():
    assert fill("Q: {query}", query="f(x) = {x}") == "Q: f(x) = {x}"


@pytest.mark.parametrize("k", range(len(INSTRUCTIONS)))
def test_every_instruction_is_verifiable(k):
    sentence, apply, check = INSTRUCTIONS[k]
    for gold in ("Barack Obama", "the Eiffel Tower in Paris", "yes", "1999 Summer Olympics"):
        assert check(apply(gold)), (sentence, gold)
    assert not check("Barack Obama"), sentence  # a mixed-case, multi-word, bare gold answer fails them all
    # Documented exceptions (data.INSTRUCTIONS): a one-word answer already has no spaces, a lower-case one
    # is already lower case. Stage-2 revision targets draw only among instructions the gold fails.
    passes_already = "hyphens" in sentence or "lower case" in sentence
    assert passes_already or not check("yes"), sentence


@pytest.mark.parametrize("slot", range(5))
def test_instruction_sits_in_exactly_one_slot_and_checking_lists_requirements_in_order(slot):
    sentence = INSTRUCTIONS[0][0]
    prompt = instruction_prompt(TASK_PROMPT, "Who?", "Some context.", sentence, slot)
    assert prompt.count(sentence) == 1 and "{I" not in prompt
    task = prompt.split("Here is the information of your task:")[1]
    req = [REQUIREMENTS[0].split(": ", 1)[1]] + list(REQUIREMENTS[1:])  # the task text says "...Requirements: "
    positions = [task.index(s) for s in req]
    assert positions == sorted(positions)
    assert positions[slot] < task.index(sentence) < (positions[slot + 1] if slot < 4 else task.index("QUESTION:"))
    if slot in (1, 2, 3):
        assert sentence + " " + REQUIREMENTS[slot + 1][:5] in task  # no run-together sentences
    target = stage2_target("Paris", 0, slot, revise=False)
    answer, checking = target.split("\nCHECKING:\n")
    assert answer == "PARIS"
    lines = checking.split("\n")
    expected = list(REQUIREMENTS)
    expected.insert(slot + 1, sentence)
    assert lines == [s + "<fulfilled>" for s in expected]


def test_revision_target_violates_then_fixes():
    target = stage2_target("Paris", 2, 0, revise=True)
    first, second = target.split("\nANSWER: ")
    assert first.startswith("Paris\nCHECKING:\n")
    assert INSTRUCTIONS[2][0] + "<not fulfilled>" in first
    assert second.startswith('"Paris"\nCHECKING:\n') and "<not fulfilled>" not in second


def hotpot_items(n):
    return [{"_id": f"h{k}", "question": f"Who founded company {k}?", "answer": f"Person {k}", "type": "bridge",
             "level": "easy", "supporting_facts": [["A", 0]],
             "context": [[f"T{p}", [f"Sentence {p}a about {k}.", f" Sentence {p}b."]] for p in range(10)]}
            for k in range(n)]


def write_hotpot(tmp_path, items):
    path = str(tmp_path / "hotpot.json")
    with open(path, "w") as f:
        json.dump(items, f)
    return path


def test_stage2_records(tmp_path):
    path = write_hotpot(tmp_path, hotpot_items(40))
    recs = stage2_records(path, n=30, revision_share=0.25)
    assert len(recs) == 30 and recs == stage2_records(path, n=30, revision_share=0.25)
    assert recs[0]["context"].split("\n")[0] == "Sentence 0a about 0. Sentence 0b."
    assert len(recs[0]["context"].split("\n")) == 10 and "T0" not in recs[0]["context"]
    revised = [r for r in recs if "<not fulfilled>" in r["output"]]
    assert 0 < len(revised) < 30
    for r in recs:
        _, _, check = INSTRUCTIONS[r["instruction"]]
        final = r["output"].rsplit("ANSWER: ", 1)[-1].split("\nCHECKING:")[0]
        assert check(final)
    assert all(r["id"] == f"h{k}" for k, r in enumerate(recs))
    assert stage2_records(path, n=5, start=30)[0]["id"] == "h30"


def test_teacher_targets_replace_generated_ones_and_unknown_ids_are_refused(tmp_path):
    path = write_hotpot(tmp_path, hotpot_items(5))
    targets = tmp_path / "t.jsonl"
    targets.write_text(json.dumps({"_id": "h1", "output": "TEACHER"}) + "\n")
    recs = stage2_records(path, n=5, targets_file=str(targets))
    assert recs[1]["output"] == "TEACHER" and recs[0]["output"] != "TEACHER"
    targets.write_text(json.dumps({"_id": "h99", "output": "x"}) + "\n")
    with pytest.raises(DataError, match="t.jsonl: 1 _id values are not among.*'h99'"):
        stage2_records(path, n=5, targets_file=str(targets))


def test_qa_records_have_empty_slots_and_the_gold_answer(tmp_path):
    recs = qa_records(write_hotpot(tmp_path, hotpot_items(3)))
    assert recs[0]["output"] == "Person 0" and "{I" not in recs[0]["prompt"]
    assert "the question. Based on" in recs[0]["prompt"]


# ---- tokenizer and response-only loss ----

def test_encode_chat_is_the_llama2_template(tokenizer_path):
    tok = Tokenizer(tokenizer_path)
    ids, labels = encode_chat(tok, "who was born", "the answer")
    prompt = [tok.bos_id] + tok.encode("[INST] who was born [/INST]", bos=False)
    assert ids == prompt + tok.encode("the answer", bos=False) + [tok.eos_id]
    assert labels == [-100] * len(prompt) + ids[len(prompt):]
    assert tok.decode(ids[len(prompt):-1]) == "the answer"
    assert tok.bos_id not in tok.encode("<s>", bos=False)  # special tokens are ids, never text


def test_labels_mask_prompt_and_padding_and_keep_eos(tokenizer_path):
    tok = Tokenizer(tokenizer_path)
    recs = [dict(prompt=f"question {k} context the passage", context="the passage", output="answer " * (k + 1))
            for k in range(3)]
    samples, dropped = tokenize_records(tok, recs)
    ids, labels = collate(samples, tok.pad_id)
    assert dropped == 0 and ids.shape[0] == 3
    for b, (x, y) in enumerate(samples):
        n_prompt = sum(v == -100 for v in y)
        assert (labels[b, :n_prompt] == -100).all() and (labels[b, len(x):] == -100).all()
        assert labels[b, len(x) - 1] == tok.eos_id and (labels[b, n_prompt:len(x)] == ids[b, n_prompt:len(x)]).all()


def test_truncation_cuts_the_context_never_the_answer(tokenizer_path):
    tok = Tokenizer(tokenizer_path)
    context = " ".join(["the passage about the band"] * 60)
    rec = dict(prompt=f"QUERY: who\nCONTEXT:\n {context}\nANSWER: \n", context=context, output="founded in 1999")
    full, _ = encode_chat(tok, rec["prompt"], rec["output"])
    (sample,), dropped = tokenize_records(tok, [rec], cutoff_len=len(full) - 40)
    ids, labels = sample
    assert dropped == 0 and len(ids) <= len(full) - 40
    answer = tok.encode("founded in 1999", bos=False, eos=True)
    assert ids[-len(answer):] == answer and labels[-len(answer):] == answer
    assert tok.decode(ids).endswith("ANSWER: \n [/INST] founded in 1999")
    _, dropped = tokenize_records(tok, [rec], cutoff_len=10)
    assert dropped == 1


def test_tokenizer_vocab_mismatch_is_one_clear_line(tokenizer_path):
    with pytest.raises(DataError, match="tokenizer has 300 tokens but the model's config.json says vocab_size 32000"):
        Tokenizer(tokenizer_path).check_vocab(32000)


# ---- bad input ----

def test_asqa_without_train_is_refused(tmp_path):
    path = str(tmp_path / "bad.json")
    with open(path, "w") as f:
        json.dump({"dev": {}}, f)
    with pytest.raises(DataError, match=r"bad.json: the top-level object has no field 'train'"):
        build_benchmark(path)


def test_hotpot_item_without_context_is_refused(tmp_path):
    items = hotpot_items(2)
    del items[1]["context"]
    with pytest.raises(DataError, match=r"hotpot.json: item 1 has no field 'context'"):
        stage2_records(write_hotpot(tmp_path, items))


def test_empty_benchmark_is_refused(tmp_path):
    with pytest.raises(DataError, match="no benchmark rows survive"):
        build_benchmark(write_asqa(tmp_path, {"solo": SOLO}))


def test_cli_writes_every_set_and_prints_counts(tmp_path, capsys, tokenizer_path):
    asqa = write_asqa(tmp_path, {f"q{k}": ROME for k in range(6)})
    data.main(["--asqa", asqa, "--hotpot", write_hotpot(tmp_path, hotpot_items(5)), "--out", str(tmp_path / "o"),
               "--tokenizer", tokenizer_path, "--cutoff-len", "4096"])
    out = capsys.readouterr().out
    assert "permutations 36" in out and "stage2.jsonl: 5 records, 0 dropped at cutoff 4096" in out
    assert sorted(os.listdir(tmp_path / "o")) == ["benchmark.jsonl", "qa.jsonl", "stage1.jsonl", "stage2.jsonl"]
