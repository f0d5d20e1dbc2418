"""Can a model read the answer out of a stage-2 prompt? The skill every stage-2 target starts with.

    python tools/read_probe.py                                   # the shipped tiny/base, 64 held-out items
    python tools/read_probe.py --model /tmp/base_v9 --items 32

On held-out HotpotQA items (the instruction-adherence items eval.py uses: from 300 on), teacher-forced, the
gold answer sentence ("Fuke plays soul music.") after five prompts of the same item: TASK_QA (the prompt
the stage-0 corpus answers over ten paragraphs), TASK_PROMPT (stage 2's prompt, without an instruction),
and TASK_QA over fewer paragraphs: the answering one and the first three, or one, of the others (in the
item's order), and the answering one alone. Printed per prompt: how often the greedy choice at the
answer's first word is the asked entity's name (copied from the question: the nine other paragraphs are
about other names), how often every later answer token is the greedy choice given the right name (the
entity's fact read out of its paragraph), and the most frequent wrong first words.
"""
import collections
import os
import sys
from dataclasses import dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import tinyworld  # noqa: E402
from cli import check_limits, config_parser  # noqa: E402
from model import Llama, resolve_device  # noqa: E402


@dataclass
class ProbeConfig:
    model: str = tinyworld.BASE  # the model to probe (HF layout)
    hotpot: str = os.path.join(tinyworld.DATA, "hotpot_train_v1.1.json")  # HotpotQA-format items
    start: int = 300  # the first item (eval.py's --instruction-start: items stage 2 never trained on)
    items: int = 64  # how many items from --start


def probe(model, tok, template, prompt, answer, autocast):
    """(name right?, rest right given the name?, the greedy first word) of one teacher-forced answer."""
    ids, labels = data.encode_chat(tok, prompt, answer, template)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        best = model(torch.tensor([ids]))[0].argmax(-1).tolist()
    answer_at = [i for i, label in enumerate(labels) if label != -100]
    first = next(i for i in answer_at if tok.decode([ids[i]]).strip())  # after the lone "▁" piece, if any
    rest = [i for i in answer_at if i > first]
    return best[first - 1] == ids[first], all(best[i - 1] == ids[i] for i in rest), tok.decode([best[first - 1]])


def main(argv=None):
    ap = config_parser(ProbeConfig, __doc__, {"start": ">= 0", "items": ">= 1"})
    cfg = ProbeConfig(**vars(ap.parse_args(argv)))
    check_limits(ap, cfg, {"start": ">= 0", "items": ">= 1"})
    items = data.load_hotpot(cfg.hotpot)[cfg.start:cfg.start + cfg.items]
    if not items:
        ap.error(f"{cfg.hotpot} has no items from --start {cfg.start}")
    _, _, autocast, why = resolve_device("cpu", "auto")
    print(f"{cfg.model}: {len(items)} items from {cfg.start}; precision: {why}")
    model, tok = Llama.from_pretrained(cfg.model).eval(), data.Tokenizer(cfg.model)
    template = data.chat_template(cfg.model)

    def some(it, k):  # the answering paragraph and the first k - 1 others, in the item's order
        texts, (gold, *_) = data.hotpot_paragraphs(it)
        keep = sorted([gold] + [i for i in range(len(texts)) if i != gold][:k - 1])
        return data.instruction_prompt(data.TASK_QA, it["question"], "\n".join(texts[i] for i in keep))

    prompts = {
        "TASK_QA, ten paragraphs": lambda it: data.instruction_prompt(data.TASK_QA, it["question"], data.hotpot_context(it)),
        "TASK_PROMPT, ten paragraphs": lambda it: data.instruction_prompt(data.TASK_PROMPT, it["question"],
                                                                          data.hotpot_context(it)),
        "TASK_QA, four paragraphs": lambda it: some(it, 4),
        "TASK_QA, two paragraphs": lambda it: some(it, 2),
        "TASK_QA, its paragraph alone": lambda it: some(it, 1),
    }
    for name, build in prompts.items():
        results = [probe(model, tok, template, build(it), it["answer"], autocast) for it in items]
        wrong = collections.Counter(w for (ok, _, w) in results if not ok).most_common(3)
        print(f"{name}: name right {sum(r[0] for r in results)}/{len(items)}, rest right given the name "
              f"{sum(r[1] for r in results)}/{len(items)}; wrong first words {wrong}")


if __name__ == "__main__":
    main()
