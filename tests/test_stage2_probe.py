"""tools/stage2_probe.py labels each part of a stage-2 target and scores each where it is (teacher-forced)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import data  # noqa: E402
import stage2_probe  # noqa: E402
from test_read_probe import Oracle  # noqa: E402

TOK = os.path.join(ROOT, "tiny", "base")


def parts_of(output, instruction):
    part = stage2_probe.char_parts(output, instruction)
    spans = {}
    for i, name in enumerate(part):
        spans.setdefault(name, []).append(output[i])
    return {name: "".join(chars) for name, chars in spans.items()}


def test_each_character_of_a_target_gets_its_part():
    sentence = data.INSTRUCTIONS[4][0]  # "Wrap the answer in parentheses."
    plain = data.stage2_target("Zopo sails from Harlow.", 4, 2, revise=False)
    got = parts_of(plain, sentence)
    assert got["answer"] == "(Zopo sails from Harlow.)"
    assert got["header"] == data.CHECKING
    assert got["inserted"] == sentence
    assert got["fixed"] == "".join(data.REQUIREMENTS)
    assert set(got["marks"].replace("<fulfilled>", "").replace("\n", "")) == set()
    revised = data.stage2_target("Zopo sails from Harlow.", 4, 2, revise=True)
    got = parts_of(revised, sentence)
    assert got["answer"] == "Zopo sails from Harlow.(Zopo sails from Harlow.)"  # the first and the fixed answer
    assert got["header"] == data.CHECKING * 2 and got["inserted"] == sentence * 2
    assert "ANSWER: " in got["marks"] and "<not fulfilled>" in got["marks"]


def test_score_counts_a_wrong_token_in_its_own_part_only():
    tok, template = data.Tokenizer(TOK), data.TEMPLATES["llama2"]
    index, slot = 4, 2
    record = dict(prompt=data.instruction_prompt(data.TASK_PROMPT, "Where does the ship Zopo sail from?",
                                                 "Zopo is a ship. Zopo sails from Harlow.", data.INSTRUCTIONS[index][0], slot),
                  output=data.stage2_target("Zopo sails from Harlow.", index, slot, revise=False), instruction=index)
    ids, labels = data.encode_chat(tok, record["prompt"], record["output"], template)
    start = next(i for i, label in enumerate(labels) if label != -100)
    parts = stage2_probe.token_parts(tok, ids[start:], record["output"], data.INSTRUCTIONS[record["instruction"]][0])
    counts = {name: parts.count(name) for name in stage2_probe.PARTS}
    assert all(counts.values()), counts
    perfect = stage2_probe.score(Oracle(tok.vocab_size), tok, template, record, False)
    assert perfect == {name: (n, n) for name, n in counts.items()}
    assert counts["slot"] == 1 and parts[parts.index("slot") + 1] == "inserted"
    for name in ("slot", "inserted", "answer"):  # one wrong greedy choice, at the first token of that part
        at = start + parts.index(name)
        one_off = stage2_probe.score(Oracle(tok.vocab_size, [at - 1]), tok, template, record, False)
        assert one_off == {**perfect, name: (counts[name] - 1, counts[name])}
    assert stage2_probe.score(Oracle(tok.vocab_size, [start - 2]), tok, template, record, False) == perfect
