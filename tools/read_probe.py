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

Then two things a chat model brings to stage 2. Format requests: on the same items, TASK_QA with one request
in a random slot (stage 0's own pool, tinyworld.FORMAT_REQUESTS, and stage 2's, data.INSTRUCTIONS), over ten
paragraphs and over the answering one alone, greedy (40 new tokens): how often the output has the request's
shape (stage 2's pool: eval.py's own check; stage 0's: the request applied to any words) and how often it is
exactly the gold answer so formatted. And the input embeddings of each pool's own words (a word of its
sentences that is one piece and in neither the other pool nor the world's other texts): their mean distance
to their centroid, beside their mean norm. Words a model never read keep alike embeddings, and a model that
cannot tell "parentheses" from "capital" cannot tell one instruction from another.
"""
import collections
import os
import random
import re
import sys
from dataclasses import dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import tinyworld  # noqa: E402
from cli import check_limits, config_parser  # noqa: E402
from model import Llama, generate, resolve_device  # noqa: E402


@dataclass
class ProbeConfig:
    model: str = tinyworld.BASE  # the model to probe (HF layout)
    hotpot: str = os.path.join(tinyworld.DATA, "hotpot_train_v1.1.json")  # HotpotQA-format items
    start: int = 300  # the first item (eval.py's --instruction-start: items stage 2 never trained on)
    items: int = 64  # how many items from --start


def teacher_forced(model, tok, template, prompt, answer, autocast):
    """(token ids, the greedy choice after each position, the positions of the answer's tokens) of one answer
    fed to the model after its prompt."""
    ids, labels = data.encode_chat(tok, prompt, answer, template)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        best = model(torch.tensor([ids]))[0].argmax(-1).tolist()
    return ids, best, [i for i, label in enumerate(labels) if label != -100]


def probe(model, tok, template, prompt, answer, autocast):
    """(name right?, rest right given the name?, the greedy first word) of one teacher-forced answer."""
    ids, best, answer_at = teacher_forced(model, tok, template, prompt, answer, autocast)
    first = next(i for i in answer_at if tok.decode([ids[i]]).strip())  # after the lone "▁" piece, if any
    rest = [i for i in answer_at if i > first]
    return best[first - 1] == ids[first], all(best[i - 1] == ids[i] for i in rest), tok.decode([best[first - 1]])


def shape_check(apply):
    """A check that an output has the shape `apply` gives any words of two or more (stage 0's requests have no
    check of their own; none of them changes case)."""
    pattern = re.escape(apply("\0 \0")).replace(re.escape("\0"), ".+")
    return lambda output: re.fullmatch(pattern, output, re.S) is not None


# the two request pools, each request as (sentence, apply(answer) -> formatted answer, check(output) -> bool);
# stage 2's checks are eval.py's own
POOLS = {"stage 0": [(s, apply, shape_check(apply)) for s, apply in tinyworld.FORMAT_REQUESTS],
         "stage 2": list(data.INSTRUCTIONS)}


def follows(pool, index, output):
    """Does the output have the shape of request `index` of `pool` ("stage 0" or "stage 2")?"""
    return POOLS[pool][index][2](output)


def context(it, k=None):
    """An item's answering paragraph and the first k - 1 others, in the item's order (no k: all of them)."""
    if k is None:
        return data.hotpot_context(it)
    texts, (gold, *_) = data.hotpot_paragraphs(it)
    keep = sorted([gold] + [i for i in range(len(texts)) if i != gold][:k - 1])
    return "\n".join(texts[i] for i in keep)


def format_probe(model, tok, template, items, pool, alone, autocast, seed=0):
    """(followed, exact) counts of greedy outputs to TASK_QA with one request of `pool` in a random slot."""
    rng, prompts, asked = random.Random(seed), [], []
    for it in items:
        k, slot = rng.randrange(len(POOLS[pool])), rng.randrange(5)
        sentence, apply, _ = POOLS[pool][k]
        user = data.instruction_prompt(data.TASK_QA, it["question"], context(it, 1 if alone else None), sentence, slot)
        prompts.append(data.encode_chat(tok, user, None, template)[0])
        asked.append((k, apply(it["answer"])))
    outs = [tok.decode(o).strip() for o in generate(model, prompts, 40, template.stop_id(tok), autocast=autocast)]
    return (sum(follows(pool, k, o) for (k, _), o in zip(asked, outs)),
            sum(o == want for (_, want), o in zip(asked, outs)))


def pool_words(tok):
    """Each pool's own words: in its sentences, one piece, and in no other fixed text of the world."""
    def words(texts):
        return {w for t in texts for w in re.findall(r"[A-Za-z]+", t)}
    sentences = {name: [s for s, _, _ in pool] for name, pool in POOLS.items()}
    rest = words(tinyworld.fixed_text().split("\n")) - words(sentences["stage 2"] + sentences["stage 0"])
    rest |= words(data.PROMPTS)
    out = {}
    for name, own in sentences.items():
        other = words(sentences["stage 0" if name == "stage 2" else "stage 2"])
        pieces = [tok.encode(w, bos=False) for w in sorted(words(own) - other - rest)]
        out[name] = [p[0] for p in pieces if len(p) == 1]
    return out


def spread(embedding, ids):
    """(mean distance of the rows `ids` to their centroid, their mean norm)."""
    rows = embedding[ids].float()
    return (rows - rows.mean(0)).norm(dim=1).mean().item(), rows.norm(dim=1).mean().item()


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
    prompts = {
        "TASK_QA, ten paragraphs": lambda it: data.instruction_prompt(data.TASK_QA, it["question"], context(it)),
        "TASK_PROMPT, ten paragraphs": lambda it: data.instruction_prompt(data.TASK_PROMPT, it["question"],
                                                                          context(it)),
        "TASK_QA, four paragraphs": lambda it: data.instruction_prompt(data.TASK_QA, it["question"], context(it, 4)),
        "TASK_QA, two paragraphs": lambda it: data.instruction_prompt(data.TASK_QA, it["question"], context(it, 2)),
        "TASK_QA, its paragraph alone": lambda it: data.instruction_prompt(data.TASK_QA, it["question"],
                                                                           context(it, 1)),
    }
    for name, build in prompts.items():
        results = [probe(model, tok, template, build(it), it["answer"], autocast) for it in items]
        wrong = collections.Counter(w for (ok, _, w) in results if not ok).most_common(3)
        print(f"{name}: name right {sum(r[0] for r in results)}/{len(items)}, rest right given the name "
              f"{sum(r[1] for r in results)}/{len(items)}; wrong first words {wrong}")
    for pool in ("stage 0", "stage 2"):
        for alone in (False, True):
            followed, exact = format_probe(model, tok, template, items, pool, alone, autocast)
            print(f"{pool}'s format requests, TASK_QA, {'its paragraph alone' if alone else 'ten paragraphs'}: "
                  f"followed {followed}/{len(items)}, exactly the formatted answer {exact}/{len(items)}")
    embedding = model.model.embed_tokens.weight.detach()
    for pool, ids in pool_words(tok).items():
        far, norm = spread(embedding, ids)
        print(f"{pool}'s own words ({len(ids)}: {', '.join(tok.decode([i]) for i in ids[:6])}, ...): input "
              f"embeddings {far:.2f} from their centroid on average, mean norm {norm:.2f}")


if __name__ == "__main__":
    main()
