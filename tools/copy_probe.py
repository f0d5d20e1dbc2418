"""Does a base copy by content? The skill the slot of stage 2's CHECKING review rests on.

    python tools/copy_probe.py                                   # the shipped tiny/base, 48 copies per shape
    python tools/copy_probe.py --model /tmp/base --items 24

The slot (tools/stage2_probe.py) asks for the sentence that follows requirement sentence k in the prompt: a
copy addressed by what the text says, not by where it is (docs/tiny-world-log.md, "Why the slot stays at 0"). This
measures it on new random copies (tinyworld.random_copy, words of the world's fixed text in random order, drawn from
--seed, a stream stage 0 never drew from), teacher-forced: the share of the reply's tokens whose greedy
choice is right, for each shape:
- run: 10-40 random words right before the reply ("Repeat the text below, one sentence per line."),
- run, ten paragraphs after: ten world paragraphs between the run and the reply ("Repeat the first part ..."),
- listing: 2-6 random sentences, one per line in the reply, right before it; and with ten paragraphs after,
- prompt English listing: the same with 2-6 sentences of tinyworld.COPY_ENGLISH in a random order (kind 3),
and for the listings their line starts alone (the first token of each line but the first: as at the slot,
the token before it, a line end, is not the one before it in the prompt). Beside each, a control: the
prompt holds another text of the same shape, scored against the first one's reply, so it counts what is
right without copying (a word finished from its first piece, the listing's line ends); a base that copies
scores far above its control.

Last, the review's own shape, zero-shot: the five requirement sentences with a stage-2 instruction inserted
in slot k (data.requirement_sentences, as a stage-2 prompt orders them), to be repeated one per line, with 0
or 10 paragraphs after them. Counted: the inserted line's start (the slot) and the other lines' starts; the
control's prompt inserts another instruction. A stage-2 prompt is not shown (stage 0 never sees one), only
its sentences.
"""
import os
import random
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import tinyworld  # noqa: E402
from cli import check_limits, config_parser  # noqa: E402
from model import Llama, resolve_device  # noqa: E402
from read_probe import teacher_forced  # noqa: E402

SHAPES = {"run": (0, 0), "run, ten paragraphs after": (1, 10), "listing": (2, 0),
          "listing, ten paragraphs after": (2, 10), "prompt English listing": (3, 0),
          "prompt English listing, ten after": (3, 10)}  # name -> (tinyworld.random_copy's kind, paragraphs after)


@dataclass
class ProbeConfig:
    model: str = tinyworld.BASE  # the model to probe (HF layout: stage 0's output, or a checkpoint's copy)
    items: int = 48  # copies per shape
    seed: int = 12345  # the copies' seed (tinyworld --copies draws from the world's seed + 1)


def choices(model, tok, template, prompt, reply, autocast):
    """(whether the greedy choice is right at each reply token, whether it is right at each line start: the
    second line's first token, the third's, ...) of `reply` teacher-forced after `prompt` (the end-of-turn
    token left out)."""
    ids, best, at = teacher_forced(model, tok, template, prompt, reply, autocast)
    at = at[:-1]
    right = [best[i - 1] == ids[i] for i in at]
    return right, [right[j] for j in range(1, len(at)) if tok.decode(ids[at[0]:at[j]]).endswith("\n")]


def score(model, tok, template, prompt, reply, autocast):
    """(greedy choices right, reply tokens, line starts right, line starts) of `reply` after `prompt`."""
    right, starts = choices(model, tok, template, prompt, reply, autocast)
    return sum(right), len(right), sum(starts), len(starts)


def review_listing(rng, names, after, instruction=None, slot=None):
    """(prompt, reply, the inserted line's index among the line starts): the requirement sentences with a
    stage-2 instruction in slot `slot` (both drawn when None), one per line, `after` world paragraphs after
    them."""
    instruction = instruction if instruction is not None else rng.randrange(len(data.INSTRUCTIONS))
    slot = slot if slot is not None else rng.randrange(len(data.REQUIREMENTS))
    lines = data.requirement_sentences(data.INSTRUCTIONS[instruction][0], slot)
    prompt = tinyworld.copy_request(rng, names, " ".join(lines), after)
    return prompt, "\n".join(lines), lines.index(data.INSTRUCTIONS[instruction][0]) - 1


def world_names(seed=0, count=160):
    """The default world's names (tinyworld.generate draws them first from its seed)."""
    return tinyworld.make_names(random.Random(seed), count, tinyworld.fixed_text())


def open_base(cls, doc, argv):
    """A base probe's start: (parser, config of dataclass `cls` with `model` and `items` fields, the model in
    fp32 on the CPU, its tokenizer and chat template, whether bf16 autocast runs, and why)."""
    limits = {"items": ">= 1"}
    ap = config_parser(cls, doc, limits)
    cfg = cls(**vars(ap.parse_args(argv)))
    check_limits(ap, cfg, limits)
    if not os.path.isfile(os.path.join(cfg.model, "model.safetensors")):
        ap.error(f"{cfg.model}: no model.safetensors; pass a model directory (train.py --stage 0 writes one)")
    _, _, autocast, why = resolve_device("cpu", "auto")
    model = Llama.from_pretrained(cfg.model).eval()
    return ap, cfg, model, data.Tokenizer(cfg.model), data.chat_template(cfg.model), autocast, why


def main(argv=None):
    _, cfg, model, tok, template, autocast, why = open_base(ProbeConfig, __doc__, argv)
    print(f"{cfg.model}: {cfg.items} copies per shape, seed {cfg.seed}; precision: {why}")
    rng, words, names = random.Random(cfg.seed), tinyworld.copy_words(), world_names()
    pct = lambda good, n: f"{good}/{n} ({100 * good / max(n, 1):.1f}%)"
    for name, (kind, after) in SHAPES.items():
        totals = [0] * 8
        for _ in range(cfg.items):
            a, b = (tinyworld.random_copy(rng, words, names, 1, kind, after) for _ in range(2))
            copy = score(model, tok, template, a["instruction"], a["output"], autocast)
            control = score(model, tok, template, b["instruction"], a["output"], autocast)
            totals = [t + v for t, v in zip(totals, copy + control)]
        line = f"{name:34s} tokens right {pct(*totals[0:2])}, control {pct(*totals[4:6])}"
        if kind >= 2:
            line += f"; line starts {pct(*totals[2:4])}, control {pct(*totals[6:8])}"
        print(line)
    for after in (0, 10):
        totals = [0] * 8  # the slot right, slots, other starts right, other starts; then the control's
        for _ in range(cfg.items):
            prompt, reply, k = review_listing(rng, names, after)
            other = rng.choice([i for i in range(len(data.INSTRUCTIONS)) if data.INSTRUCTIONS[i][0] not in reply])
            control = review_listing(rng, names, after, other, k)[0]  # the same slot, another instruction
            for at, p in ((0, prompt), (4, control)):
                starts = choices(model, tok, template, p, reply, autocast)[1]
                hits = (starts[k], 1, sum(starts) - starts[k], len(starts) - 1)
                totals[at:at + 4] = [t + h for t, h in zip(totals[at:at + 4], hits)]
        print(f"{f'review listing, {after} paragraphs after':34s} the slot's line start {pct(*totals[0:2])}, "
              f"control {pct(*totals[4:6])}; other line starts {pct(*totals[2:4])}, control {pct(*totals[6:8])}")


if __name__ == "__main__":
    main()
