"""tools/copy_probe.py scores a copy's reply tokens and its line starts where they are (teacher-forced)."""
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import copy_probe  # noqa: E402
import data  # noqa: E402
import tinyworld  # noqa: E402
from test_read_probe import Oracle  # noqa: E402

TOK = os.path.join(ROOT, "tiny", "base")


def test_score_counts_reply_tokens_and_line_starts():
    tok, template = data.Tokenizer(TOK), data.TEMPLATES["llama2"]
    names = copy_probe.world_names()
    assert len(names) == 160 and names == tinyworld.generate(names=160, hotpot_items=1, corpus_draws=1,
                                                           polish_draws=1, avoid=tinyworld.fixed_text())[3]
    r = tinyworld.random_copy(random.Random(0), tinyworld.copy_words(), names, 1, kind=2, after=3)
    lines = r["output"].split("\n")
    assert len(lines) >= 2 and r["instruction"].count("\n") == 2 + 2 + 2  # request, text, three paragraphs
    ids, labels = data.encode_chat(tok, r["instruction"], r["output"], template)
    at = [i for i, label in enumerate(labels) if label != -100][:-1]  # the end-of-turn token is not scored
    score = lambda wrong: copy_probe.score(Oracle(tok.vocab_size, wrong), tok, template, r["instruction"],
                                           r["output"], False)
    assert score(()) == (len(at), len(at), len(lines) - 1, len(lines) - 1)
    second = next(j for j in range(1, len(at)) if tok.decode(ids[at[0]:at[j]]).endswith("\n"))
    assert tok.decode(ids[at[second]:]).startswith(lines[1][:1])  # the second line's first token
    assert score([at[second] - 1]) == (len(at) - 1, len(at), len(lines) - 2, len(lines) - 1)
    assert score([at[0] - 1]) == (len(at) - 1, len(at), len(lines) - 1, len(lines) - 1)  # not a line start
    assert score([at[-1]]) == score(())  # the end-of-turn token's choice is not counted


def test_review_listing_marks_the_inserted_instructions_line_start():
    """The zero-shot review shape: the requirement sentences in a stage-2 prompt's order, the inserted
    instruction's line start found where it is (an oracle wrong only there misses the slot alone)."""
    tok, template = data.Tokenizer(TOK), data.TEMPLATES["llama2"]
    names = copy_probe.world_names()
    for slot in range(len(data.REQUIREMENTS)):
        prompt, reply, k = copy_probe.review_listing(random.Random(slot), names, 2, instruction=3, slot=slot)
        lines = reply.split("\n")
        assert lines == data.requirement_sentences(data.INSTRUCTIONS[3][0], slot) and k == slot
        assert prompt.startswith(tinyworld.FIRST_PART_REQUEST + "\n\n" + " ".join(lines) + "\n\n")
        ids, labels = data.encode_chat(tok, prompt, reply, template)
        at = [i for i, label in enumerate(labels) if label != -100][:-1]
        starts = [j for j in range(1, len(at)) if tok.decode(ids[at[0]:at[j]]).endswith("\n")]
        assert tok.decode(ids[at[starts[k]]:]).startswith(data.INSTRUCTIONS[3][0][:1])
        right, hits = copy_probe.choices(Oracle(tok.vocab_size, [at[starts[k]] - 1]), tok, template, prompt, reply,
                                         False)
        assert len(hits) == len(lines) - 1 and not hits[k] and sum(hits) == len(hits) - 1
        assert sum(right) == len(at) - 1
