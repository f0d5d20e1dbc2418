"""Where does a stage-2 model fail? Each part of its target, measured on held-out items.

    python tools/stage2_probe.py --adapter out/stage2              # the demo's US-Tuning model, 100 items
    python tools/stage2_probe.py --adapter /tmp/s2 --items 40

On the held-out HotpotQA items eval.py scores instruction adherence on (100 from 300, the same instruction,
slot and revision draws), teacher-forced on the gold stage-2 target: for each part of the target, the share of
its tokens whose greedy choice is right, and how many items get every token of that part right. The parts:
- answer: the answer, formatted as the instruction asks (and, in a revision, the first plain answer),
- header: `CHECKING:`,
- fixed: the five requirement sentences every prompt has,
- slot: the first token of that sentence: where the model must leave the fixed list for the prompt's sentence,
- inserted: the rest of the instruction sentence the prompt inserted in one of its slots,
- marks: `<fulfilled>` / `<not fulfilled>`, line ends and `ANSWER:`.
Then greedy outputs to eval.py's own prompts (200 new tokens): how many hold the CHECKING header, how many list the asked sentence
after it, how many list another sentence of the pool there, and eval.py's two verdicts (instruction pass,
CHECKING well-formed). A model that writes the fixed lines but not the inserted one has learned the block by
heart without reading the prompt.
"""
import collections
import os
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import eval as ev  # noqa: E402
import lora  # noqa: E402
import tinyworld  # noqa: E402
from cli import check_limits, config_parser  # noqa: E402
from model import Llama, generate, resolve_device  # noqa: E402
from read_probe import teacher_forced  # noqa: E402

PARTS = ("answer", "header", "fixed", "slot", "inserted", "marks")
NEW_TOKENS = ev.EvalConfig.max_new_tokens  # eval.py's default


@dataclass
class ProbeConfig:
    adapter: str = "out/stage2"  # a stage-2 run of train.py (its lineage.json names the base and stage 1)
    hotpot: str = os.path.join(tinyworld.DATA, "hotpot_train_v1.1.json")  # HotpotQA-format items
    start: int = 300  # the first held-out item (eval.py's --instruction-start)
    items: int = 100  # how many items from --start (eval.py's --instruction-items)


def char_parts(output, instruction):
    """The part (one of PARTS) of each character of a stage-2 target (data.stage2_target's layout)."""
    part = ["marks"] * len(output)

    def paint(text, name, start=0, end=None):
        at = output.find(text, start, end)
        while at >= 0:
            part[at:at + len(text)] = [name] * len(text)
            at = output.find(text, at + 1, end)

    first = output.index("\n" + data.CHECKING)
    part[:first] = ["answer"] * first
    paint(data.CHECKING, "header")
    for sentence in data.REQUIREMENTS:
        paint(sentence, "fixed")
    paint(instruction, "inserted")
    if "ANSWER: " in output:  # a revision: the fixed answer after the first block
        at = output.index("ANSWER: ") + len("ANSWER: ")
        end = output.index("\n", at)
        part[at:end] = ["answer"] * (end - at)
    return part


def token_parts(tok, response_ids, output, instruction):
    """The part of each response token (the end-of-turn token excluded): the part of its last character; the
    first token of each inserted sentence is "slot" (where the model must decide to copy the prompt's sentence
    instead of writing the next fixed one)."""
    part = char_parts(output, instruction)
    out = [part[min(max(len(tok.decode(response_ids[:j + 1])) - 1, 0), len(output) - 1)]
           for j in range(len(response_ids) - 1)]
    return [("slot" if name == "inserted" and (j == 0 or out[j - 1] != "inserted") else name)
            for j, name in enumerate(out)]


def score(model, tok, template, record, autocast):
    """{part: (tokens whose greedy choice is right, tokens)} of one stage-2 record, teacher-forced."""
    ids, best, answer_at = teacher_forced(model, tok, template, record["prompt"], record["output"], autocast)
    start, out = answer_at[0], {}
    instruction = data.INSTRUCTIONS[record["instruction"]][0]
    for j, name in enumerate(token_parts(tok, ids[start:], record["output"], instruction)):
        good, count = out.get(name, (0, 0))
        out[name] = (good + (best[start + j - 1] == ids[start + j]), count + 1)
    return out


def main(argv=None):
    limits = {"start": ">= 0", "items": ">= 1"}
    ap = config_parser(ProbeConfig, __doc__, limits)
    cfg = ProbeConfig(**vars(ap.parse_args(argv)))
    check_limits(ap, cfg, limits)
    if not os.path.isfile(os.path.join(cfg.adapter, "lineage.json")):
        ap.error(f"{cfg.adapter}: no lineage.json; pass a directory `train.py --stage 2` wrote")
    records = data.stage2_records(cfg.hotpot, cfg.items, start=cfg.start, seed=1)
    _, _, autocast, why = resolve_device("cpu", "auto")
    base = lora.read_lineage(cfg.adapter)["base"]
    print(f"{cfg.adapter} (base {base}): {len(records)} items from {cfg.start}; precision: {why}")
    model = lora.load_trained(cfg.adapter, lambda p: Llama.from_pretrained(p))[0].eval()
    tok, template = data.Tokenizer(base), data.chat_template(base)
    right, total, whole, seen = (collections.Counter() for _ in range(4))
    for r in records:
        for name, (good, count) in score(model, tok, template, r, autocast).items():
            right[name] += good
            total[name] += count
            seen[name] += 1
            whole[name] += good == count
    for name in PARTS:
        print(f"{name:9s} tokens right {right[name]}/{total[name]} ({100 * right[name] / max(total[name], 1):.1f}%), "
              f"items with every token right {whole[name]}/{seen[name]}")
    # eval.py's own prompts (cut as it cuts them) and verdicts (ev.record)
    room = model.args.max_position_embeddings - NEW_TOKENS  # the model's own config, parsed when it loaded
    prompts = ev.model_prompts(tok, [], records, False, template, room)
    outs = [tok.decode(o) for o in generate(model, [p[3] for p in prompts], NEW_TOKENS, template.stop_id(tok),
                                            autocast=autocast)]
    counts = collections.Counter()
    for prompt, out in zip(prompts, outs):
        verdict, asked = ev.record("", prompt, "", out, False), prompt[2]
        review = out.split(data.CHECKING, 1)[1] if data.CHECKING in out else ""
        counts["header"] += data.CHECKING in out
        counts["asked"] += asked in review
        counts["other"] += any(s in review for s, _, _ in data.INSTRUCTIONS if s != asked)
        counts["pass"] += verdict["passed"]
        counts["well-formed"] += verdict["checking_well_formed"]
    n = len(records)
    print(f"greedy: CHECKING header {counts['header']}/{n}, the asked sentence after it {counts['asked']}/{n}, "
          f"another sentence of the pool after it {counts['other']}/{n}; instruction pass {counts['pass']}/{n}, "
          f"CHECKING well-formed {counts['well-formed']}/{n}")
    for r, out in list(zip(records, outs))[:3]:
        print(f"  asked {data.INSTRUCTIONS[r['instruction']][0]!r} (slot {r['slot']}) -> {out[:300]!r}")


if __name__ == "__main__":
    main()
