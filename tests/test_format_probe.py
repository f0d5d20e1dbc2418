"""tools/format_probe.py: which requests wrap an answer, and how replies are counted."""
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import data  # noqa: E402
import format_probe  # noqa: E402
import tinyworld  # noqa: E402


def test_wrappers_are_the_text_a_request_puts_around_any_answer():
    own = dict(tinyworld.FORMAT_REQUESTS)
    assert format_probe.wrapper(own["Put the answer in curly braces."]) == ("{", "}")
    assert format_probe.wrapper(own["Begin the answer with the word \"Well\"."]) == ("Well, ", "")
    assert format_probe.wrapper(own["End the answer with the words \"as the context says\"."]) == (
        "", " as the context says.")
    assert format_probe.wrapper(own["Join the words of the answer with underscores."]) is None  # changes it
    assert format_probe.wrapper(own["Give the answer three times, separated by a bar."]) is None  # repeats it
    stage2 = {s: apply for s, apply, _ in data.INSTRUCTIONS}
    assert format_probe.wrapper(stage2["End the answer with a full stop."]) is None  # a sentence has one
    assert format_probe.wrapper(stage2["Write the answer in capital letters."]) is None
    assert format_probe.wrapper(stage2["Wrap the answer in square brackets."]) == ("[", "]")


def test_counts_and_prompts():
    item = tinyworld.generate(names=20, asqa_names=2, hotpot_items=1, corpus_draws=1, polish_draws=1,
                              avoid=tinyworld.fixed_text())[1][0]
    (user, apply, gold), = format_probe.probe_items(random.Random(0), [item], [("Put the answer in curly "
                                                                               "braces.", lambda a: "{" + a + "}")],
                                                    data.TASK_QA, True)
    assert "Put the answer in curly braces." in user and gold == item["answer"] and gold in user
    paragraphs, evidence = data.hotpot_paragraphs(item)
    assert [p in user for p in paragraphs] == [i in evidence for i in range(10)]  # the gold paragraph alone
    probes = [(user, apply, gold)] * 4
    replies = ["{" + gold + "}", "{Other was founded in 1900.}", gold, "{}"]
    assert format_probe.counts(replies, probes) == (2, 4, 1, 1)  # an empty wrapper is not an applied one


def test_case_rows_ask_for_capitals_and_small_letters_only():
    """--case probes the two case changes, in stage 0's words (CHAT_REQUESTS) and in stage 2's."""
    words = set()
    for pool, _, _ in format_probe.CASE_ROWS.values():
        assert [op("Mevenel was launched in 1998.") for _, op in pool] == [
            "MEVENEL WAS LAUNCHED IN 1998.", "mevenel was launched in 1998."]
        words |= {sentence for sentence, _ in pool}
    assert words == {s for s, _ in tinyworld.CHAT_REQUESTS[:2]} | {s for s, _, _ in data.INSTRUCTIONS[:2]}
