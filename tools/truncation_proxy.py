"""How many stage-2 samples lose a supporting paragraph at Llama-2 lengths: a PROXY, not a measurement.

    python tools/truncation_proxy.py        # tiny world (data/tiny), tiny tokenizer (tiny/base)

There is no Llama-2 tokenizer and no real HotpotQA here. The paper's prompts: TASK_PROMPT is about 550
Llama-2 tokens, a real HotpotQA context (10 paragraphs) about 1,300, and the authors cut at 1024, so what
matters is the share of its context a sample keeps. Per record this tool estimates that share at Llama-2
lengths: the non-context part (TASK_PROMPT 550, the question, instruction and target at the TASK_PROMPT's
characters per token, ~10 tokens of chat template) is subtracted from 1024 and the rest divided by 1,300.
It then tokenises the tiny-world record with the tiny tokenizer at the cutoff that keeps that same share
of its (much shorter) context, under both truncation rules. Tiny-world items have one supporting paragraph
of ten; real HotpotQA items have two, so a second line marks a second paragraph, drawn with seed 0, as
evidence too.
"""
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import data  # noqa: E402
import tinyworld  # noqa: E402

LLAMA2_CUTOFF, LLAMA2_TASK_PROMPT, LLAMA2_CONTEXT, LLAMA2_TEMPLATE = 1024, 550, 1300, 10
EMPTY_TASK_PROMPT = data.fill(data.TASK_PROMPT, query="", context="", **{f"I{k}": "" for k in range(5)})


def proxy_cutoff(tok, rec, chars_per_token):
    """The tiny-token cutoff that keeps the share of this record's context a 1024 Llama-2 cutoff would keep."""
    other_chars = len(rec["prompt"]) - len(rec["context"]) - len(EMPTY_TASK_PROMPT) + len(rec["output"])
    llama2_rest = LLAMA2_TASK_PROMPT + other_chars / chars_per_token + LLAMA2_TEMPLATE
    share = max(0.0, (LLAMA2_CUTOFF - llama2_rest) / LLAMA2_CONTEXT)
    full = len(data.encode_chat(tok, rec["prompt"], rec["output"])[0])
    context = len(tok.encode(rec["context"], bos=False))
    return full - context + int(share * context), share


def count(tok, records, cutoffs, label):
    st = {rule: dict.fromkeys(["over_cutoff", "lost_evidence", "dropped"], 0) for rule in data.TRUNCATIONS}
    for rec, cutoff in zip(records, cutoffs):
        for rule in data.TRUNCATIONS:
            one = {}
            data.tokenize_records(tok, [rec], cutoff, truncation=rule, stats=one)
            for k in st[rule]:
                st[rule][k] += one[k]
    ev, pa = st["evidence"], st["paper"]
    print(f"{label}: over the cutoff {ev['over_cutoff']} of {len(records)}; lost a supporting paragraph: paper "
          f"{pa['lost_evidence']}, evidence {ev['lost_evidence']}; dropped: paper {pa['dropped']}, "
          f"evidence {ev['dropped']}")


if __name__ == "__main__":
    os.chdir(ROOT)
    if not os.path.exists(os.path.join(tinyworld.DATA, "hotpot_train_v1.1.json")):
        tinyworld.write(tinyworld.DATA)
    tok = data.Tokenizer(tinyworld.BASE)
    records = data.stage2_records(os.path.join(tinyworld.DATA, "hotpot_train_v1.1.json"), n=300)
    chars_per_token = len(EMPTY_TASK_PROMPT) / LLAMA2_TASK_PROMPT
    cutoffs, shares = zip(*(proxy_cutoff(tok, r, chars_per_token) for r in records))
    shares = sorted(shares)
    print(f"{chars_per_token:.2f} characters per Llama-2 token; share of the context a 1024 cut keeps: median "
          f"{shares[len(shares) // 2]:.2f}, min {shares[0]:.2f}, max {shares[-1]:.2f}; tiny cutoffs "
          f"{min(cutoffs)}-{max(cutoffs)}")
    count(tok, records, cutoffs, "stage-2, one supporting paragraph (tiny world)")
    rng = random.Random(0)
    for rec in records:
        rec["evidence"] = sorted(rec["evidence"] + rng.sample([i for i in range(10) if i not in rec["evidence"]], 1))
    count(tok, records, cutoffs, "stage-2, two supporting paragraphs (as real HotpotQA)")
