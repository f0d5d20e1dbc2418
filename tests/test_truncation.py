"""An over-long stage-2 prompt loses its distractor paragraphs before its evidence (--truncation evidence);
--truncation paper cuts the end of the context, as the authors' LLaMA-Factory cutoff did."""
import json

import pytest

from data import Tokenizer, encode_chat, qa_records, stage2_records, tokenize_records, truncation_report

SUPPORTING = (3, 8)  # one in the middle, one near the end: a cut end loses the second


def hotpot_item(k, supporting=SUPPORTING, facts=True):
    item = {"_id": f"h{k}", "question": f"When was band {k} formed?", "answer": f"{1990 + k}", "type": "bridge",
            "level": "easy",
            "context": [[f"T{p}", [f"Paragraph {p} says the band was formed in {1000 + 7 * p}.",
                                   f" The painter {p} was born in the city."]] for p in range(10)]}
    if facts:
        item["supporting_facts"] = [[f"T{p}", 0] for p in supporting]
    return item


def write_hotpot(tmp_path, items):
    path = tmp_path / "hotpot.json"
    path.write_text(json.dumps(items))
    return str(path)


def kept_paragraphs(tok, ids, rec):
    """Indices of the record's paragraphs that survive whole in the tokenised prompt, in prompt order."""
    text = tok.decode(ids)
    found = [(text.find(p), i) for i, p in enumerate(rec["paragraphs"]) if p in text]
    return [i for _, i in sorted(found)]


def full_length(tok, rec):
    return len(encode_chat(tok, rec["prompt"], rec["output"])[0])


def test_evidence_keeps_supporting_paragraphs_that_the_paper_cut_loses(tmp_path, tokenizer_path):
    tok = Tokenizer(tokenizer_path)
    (rec,) = stage2_records(write_hotpot(tmp_path, [hotpot_item(0)]), n=1)
    assert rec["evidence"] == list(SUPPORTING) and "\n".join(rec["paragraphs"]) == rec["context"]
    para = len(tok.encode(rec["paragraphs"][0], bos=False))
    cutoff = full_length(tok, rec) - 4 * para  # room for about six of the ten paragraphs
    out = {}
    for rule in ("evidence", "paper"):
        stats = {}
        (sample,), dropped = tokenize_records(tok, [rec], cutoff, truncation=rule, stats=stats)
        assert dropped == 0 and len(sample[0]) <= cutoff
        out[rule] = sample, kept_paragraphs(tok, sample[0], rec), stats
    (ids, labels), kept, stats = out["evidence"]
    assert set(SUPPORTING) <= set(kept) and kept == sorted(kept)  # evidence kept, order kept
    distractors = [i for i in range(10) if i not in SUPPORTING]
    assert [i for i in kept if i not in SUPPORTING] == distractors[:len(kept) - 2]  # the last ones went first
    assert len(kept) < 10 and stats == dict(records=1, over_cutoff=1, lost_evidence=0, dropped=0)
    _, kept_paper, stats_paper = out["paper"]
    assert 8 not in kept_paper and kept_paper == list(range(len(kept_paper)))  # a prefix: the end was cut
    assert stats_paper["lost_evidence"] == 1
    # the target is untouched: the same labelled tokens under both rules as without any cut
    _, full_labels = encode_chat(tok, rec["prompt"], rec["output"])
    answer = [t for t in full_labels if t != -100]
    for (ids, labels), _, _ in out.values():
        assert [t for t in labels if t != -100] == answer and ids[-len(answer):] == answer


def test_evidence_falls_back_to_cutting_the_end_when_the_evidence_alone_is_too_long(tmp_path, tokenizer_path):
    tok = Tokenizer(tokenizer_path)
    (rec,) = stage2_records(write_hotpot(tmp_path, [hotpot_item(0)]), n=1)
    para = len(tok.encode(rec["paragraphs"][0], bos=False))
    stats = {}
    (sample,), dropped = tokenize_records(tok, [rec], full_length(tok, rec) - 9 * para, stats=stats)
    assert dropped == 0 and stats["lost_evidence"] == 1
    assert kept_paragraphs(tok, sample[0], rec) == [3]  # no distractor left; the second supporting one cut


def test_prompts_under_the_cutoff_are_identical_under_both_rules(tmp_path, tokenizer_path):
    tok = Tokenizer(tokenizer_path)
    recs = stage2_records(write_hotpot(tmp_path, [hotpot_item(k) for k in range(3)]), n=3)
    cutoff = max(full_length(tok, r) for r in recs)
    evidence, paper = (tokenize_records(tok, recs, cutoff, truncation=rule) for rule in ("evidence", "paper"))
    assert evidence == paper and evidence[0][0] == encode_chat(tok, recs[0]["prompt"], recs[0]["output"])


def test_items_without_supporting_facts_are_cut_as_the_paper_cuts(tmp_path, tokenizer_path):
    tok = Tokenizer(tokenizer_path)
    (rec,) = qa_records(write_hotpot(tmp_path, [hotpot_item(0, facts=False)]), n=1)
    assert rec["evidence"] is None
    # supporting_facts that name no paragraph of the context leave nothing to protect: no distractor either
    assert qa_records(write_hotpot(tmp_path, [hotpot_item(0, supporting=(12,))]), n=1)[0]["evidence"] is None
    cutoff = full_length(tok, rec) - 30
    assert tokenize_records(tok, [rec], cutoff, truncation="evidence") == tokenize_records(tok, [rec], cutoff,
                                                                                           truncation="paper")
    assert truncation_report(tok, [rec], cutoff) == ""


def test_report_counts_both_rules(tmp_path, tokenizer_path):
    tok = Tokenizer(tokenizer_path)
    recs = qa_records(write_hotpot(tmp_path, [hotpot_item(0), hotpot_item(1, supporting=(0, 1))]), n=2)
    assert full_length(tok, recs[0]) == full_length(tok, recs[1])  # QA targets: answers of one length
    para = len(tok.encode(recs[0]["paragraphs"][0], bos=False))
    cutoff = min(full_length(tok, r) for r in recs) - 4 * para
    assert truncation_report(tok, recs, cutoff, name="stage-2") == (
        f"stage-2 prompts over {cutoff} tokens: 2 of 2; lost a supporting paragraph: paper 1, evidence 0; "
        "dropped (no room for the answer): paper 0, evidence 0")
    assert truncation_report(tok, recs, 20).endswith("dropped (no room for the answer): paper 2, evidence 2")


def test_unknown_rule_and_malformed_supporting_facts_are_refused(tmp_path, tokenizer_path):
    with pytest.raises(ValueError, match="truncation must be one of"):
        tokenize_records(Tokenizer(tokenizer_path), [], truncation="middle")
    item = hotpot_item(0)
    item["supporting_facts"] = [["T3", "zero"]]
    with pytest.raises(ValueError, match=r"hotpot.json: field 'supporting_facts' of item 0 .*not a list of \[title"):
        stage2_records(write_hotpot(tmp_path, [item]), n=1)


@pytest.mark.parametrize("truncation", ["evidence", "paper"])
def test_a_record_without_a_context_is_dropped_whole_when_over_the_cutoff(tokenizer_path, truncation):
    """Stage 0's copies have no context to cut: one over the cutoff is dropped and counted, the rest kept."""
    tok = Tokenizer(tokenizer_path)
    short = dict(id="a", prompt="Repeat the text below.\n\nrock jazz", context="", output="rock jazz")
    long = dict(short, id="b", prompt="Repeat the text below.\n\n" + "rock jazz " * 200)
    stats = {}
    samples, dropped = tokenize_records(tok, [short, long], 128, truncation=truncation, stats=stats)
    assert dropped == 1 and len(samples) == 1 and stats["over_cutoff"] == 1
    assert samples[0] == tokenize_records(tok, [short], 128)[0][0]
