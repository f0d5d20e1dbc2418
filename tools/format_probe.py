"""Does a base apply a format request it reads in the prompt's head? The skill stage 2's answers rest on.

    python tools/format_probe.py                                  # the shipped tiny/base, 80 held-out items
    python tools/format_probe.py --model /tmp/base --hotpot data/v31/hotpot_train_v1.1.json --items 40
    python tools/format_probe.py --model /tmp/base --case        # capitals and small letters only

Zero-shot and greedy (40 new tokens), on held-out HotpotQA items of the tiny world (from item 300 on: stage 2
trains on the first 300), each with a request drawn from --seed in a random slot of the prompt's five:
- stage 0's own pool (tinyworld.FORMAT_REQUESTS) in TASK_QA over the gold paragraph alone, then over all ten,
- the stage-2 pool (data.INSTRUCTIONS, which stage 0 never sees) in TASK_QA over ten paragraphs, and in
  TASK_PROMPT, stage 2's own prompt (its CHECKING instructions are new to a base too).
Counted per row: the wrapper applied (for the requests that put text before and/or after the answer, e.g.
"{...}", "Well, ...", "... as the context says.": the reply starts and ends as the request says, whatever
answer is inside), the reply equal to the formatted gold answer, and the reply equal to the plain gold answer.
"""
import os
import random
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import tinyworld  # noqa: E402
from copy_probe import open_base  # noqa: E402
from model import generate  # noqa: E402

OWN = list(tinyworld.FORMAT_REQUESTS)
STAGE2 = [(sentence, apply) for sentence, apply, _ in data.INSTRUCTIONS]
ROWS = {"own pool, TASK_QA, one passage": (OWN, data.TASK_QA, True),
        "own pool, TASK_QA, ten paragraphs": (OWN, data.TASK_QA, False),
        "stage-2 pool, TASK_QA, ten paragraphs": (STAGE2, data.TASK_QA, False),
        "stage-2 pool, TASK_PROMPT, ten": (STAGE2, data.TASK_PROMPT, False)}
# --case: the two case changes alone (capitals, small letters), which no wrapper makes: a base must spell
# the world's names, each one piece of its tokenizer. Asked in stage 0's words (tinyworld.CHAT_REQUESTS) and
# in stage 2's, over the gold paragraph alone and over all ten.
CASE_ROWS = {"case, CHAT_REQUESTS, TASK_QA, one passage": (tinyworld.CHAT_CASE_REQUESTS, data.TASK_QA, True),
             "case, CHAT_REQUESTS, TASK_QA, ten": (tinyworld.CHAT_CASE_REQUESTS, data.TASK_QA, False),
             "case, stage-2 pool, TASK_QA, one passage": (STAGE2[:2], data.TASK_QA, True),
             "case, stage-2 pool, TASK_PROMPT, ten": (STAGE2[:2], data.TASK_PROMPT, False)}
NEW_TOKENS = 40


@dataclass
class ProbeConfig:
    model: str = tinyworld.BASE  # the base to probe (HF layout)
    hotpot: str = os.path.join(tinyworld.DATA, "hotpot_train_v1.1.json")  # the tiny world's HotpotQA file
    items: int = 80  # held-out items per row (items 300 on)
    seed: int = 5  # the draws of request and slot
    case: bool = False  # probe the two case changes only (CASE_ROWS: capitals, small letters) instead of ROWS


def wrapper(apply):
    """(text before, text after) that `apply` puts around any answer, or None when it does not wrap (it
    changes the answer itself, repeats it, or only keeps its full stop)."""
    parts = apply("\0").split("\0")
    if len(parts) != 2 or not (parts[0] or parts[1].strip(".")):
        return None
    return parts[0], parts[1]


def probe_items(rng, items, pool, task, one_passage):
    """(user prompt, request's apply, gold answer) per item, the request in a random slot."""
    out = []
    for item in items:
        request, apply = rng.choice(pool)
        paragraphs, evidence = data.hotpot_paragraphs(item)
        context = paragraphs[evidence[0]] if one_passage else data.hotpot_context(item)
        out.append((data.instruction_prompt(task, item["question"], context, request, rng.randrange(5)), apply,
                    item["answer"]))
    return out


def counts(replies, probes):
    """(wrappers applied, wrapping requests, formatted gold, plain gold) over greedy replies."""
    wrapped = applied = formatted = plain = 0
    for reply, (_, apply, gold) in zip(replies, probes):
        reply, wrap = reply.strip(), wrapper(apply)
        if wrap:
            wrapped += 1
            applied += reply.startswith(wrap[0]) and reply.endswith(wrap[1]) and len(reply) > len(wrap[0] + wrap[1])
        formatted += reply == apply(gold)
        plain += reply == gold
    return applied, wrapped, formatted, plain


def main(argv=None):
    ap, cfg, model, tok, template, autocast, why = open_base(ProbeConfig, __doc__, argv)
    if not os.path.isfile(cfg.hotpot):
        ap.error(f"{cfg.hotpot}: missing; `python tinyworld.py` writes the tiny world's files")
    items = data.load_hotpot(cfg.hotpot)[300:300 + cfg.items]
    if not items:
        ap.error(f"{cfg.hotpot}: no items from 300 on (the held-out ones); it holds the tiny world's 400")
    print(f"{cfg.model}: {len(items)} held-out items, seed {cfg.seed}; precision: {why}")
    rng = random.Random(cfg.seed)
    for name, (pool, task, one) in (CASE_ROWS if cfg.case else ROWS).items():
        probes = probe_items(rng, items, pool, task, one)
        prompts = [data.encode_chat(tok, user, template=template)[0] for user, _, _ in probes]
        replies = [tok.decode(r) for r in generate(model, prompts, NEW_TOKENS, tok.eos_id, autocast=autocast,
                                                   batch_tokens=40000)]
        applied, wrapped, formatted, plain = counts(replies, probes)
        if cfg.case:  # the reply is all in the asked case, whatever its words (a misspelt name counts)
            cased = sum(any(c.isalpha() for c in r) and apply(r.strip()) == r.strip() for r, (_, apply, _) in
                        zip(replies, probes))
            head = f"case applied {cased}/{len(probes)}"
        else:
            head = f"wrapper applied {applied}/{wrapped}"
        print(f"{name:38s} {head}, formatted gold {formatted}/{len(probes)}, plain gold {plain}/{len(probes)}")


if __name__ == "__main__":
    main()
