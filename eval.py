"""Evaluate: contextual QA on known vs unknown questions (SPEC.md sections 6-7), scored two ways.

    python eval.py                                    # every model found under out/, on the tiny world
    python eval.py --model Llama-2-7b-chat-hf --asqa ASQA.json --adapter out/stage2 [--split all]

Each benchmark row is asked twice over the same passage: its known question (answer in the passage) and
its unknown question (answered by a sibling passage: the right reply is 'Not Provided').
- paper scoring reads the raw output, as the authors did. A stage-2 model's CHECKING review repeats
  "...please answer it with 'Not Provided'", which the refusal word list counts as a refusal.
- answer scoring (our default) reads only the answer: the text before the first CHECKING:, or after the
  last ANSWER: when the model revised itself.
Both are always computed and printed; --scoring picks which leads the table. Strict metrics, the error
breakdown, the stage-1 (Sufficient/Insufficient) view and instruction adherence come beside them.
A trained run is rebuilt as its lineage.json records (lora.load_trained): stage 1 under a stage-2 adapter is
a frozen fp32 branch, or merged into the weights if that run was trained with train.py --merge-stage1.
"""
import dataclasses
import json
import os
import string
import sys
from dataclasses import dataclass


import data
import lora
import tinyworld
from cli import check_limits, config_parser
from model import CheckpointError, Llama, generate, resolve_device


@dataclass
class EvalConfig:
    model: str = ""  # base checkpoint; default: the tiny world's shipped tiny/base
    adapter: str = ""  # a trained directory (lineage.json) or any PEFT LoRA adapter for --model
    asqa: str = ""  # default data/tiny/ASQA.json
    hotpot: str = ""  # for instruction adherence; default data/tiny/hotpot_train_v1.1.json
    out_root: str = "out"  # where trained models are found and out/eval is written
    split: str = "test"  # test (rows whose ASQA record no training saw) | all (as the authors did)
    filter: str = "paper"  # benchmark rows: paper (the authors' filter) | strict (see train.py --help)
    scoring: str = "answer"  # answer | paper: which scoring leads the table
    task_prefix: str = "auto"  # on | off | auto (TASK_ASSIGNMENT_PREFIX for fine-tuned models only)
    paper_quirk: bool = False  # serve a stage-2 adapter on the plain base, as the authors' Llama-2 code did
    max_new_tokens: int = 150  # greedy decoding stops here or at EOS
    batch_size: int = 32  # prompts decoded together
    max_rows: int = 0  # 0: every row of the split
    instruction_items: int = 100  # held-out HotpotQA items for instruction adherence (0: skip)
    instruction_start: int = 300  # the first item after those stage 2 trained on
    device: str = "auto"  # auto (CUDA if visible) | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto | float32 | bfloat16; auto: bf16 autocast on CUDA and on CPUs with native bf16
    template: str = "auto"  # chat layout: auto (from the model's own chat template) | llama2 | chatml | llama3


# Rows of the paper's table (SPEC 7): the directory train.py writes each run to, our label, the authors'
# label and their numbers (Llama-2-7B-chat; known / unknown / F1).
RUNS = [("base", "base", "Llama-2-7B-chat (base)", (79.3, 58.3, 67.2)),
        ("stage1", "stage 1 only", "stage 1 only", (52.4, 84.4, 64.6)),
        ("qa_only", "QA only", "QA only (HotpotQA SFT)", (77.5, 58.3, 66.5)),
        ("stage2_only", "stage 2 only", "stage 2 only", (84.8, 59.0, 69.6)),
        ("stage1_qa", "stage 1 -> QA", "stage 1 -> QA", (77.0, 20.9, 32.8)),
        ("stage2", "US-Tuning (stage 1 -> stage 2)", "US-Tuning (stage 1 -> stage 2)", (79.7, 93.0, 85.8))]


# ---- scoring ----

def answer_part(output: str) -> str:
    """The answer without its CHECKING review: after the last `ANSWER:` (a revision), before `CHECKING:`."""
    if "ANSWER:" in output:
        output = output.rsplit("ANSWER:", 1)[1]
    return output.split(data.CHECKING, 1)[0].strip()


def is_refusal(text: str) -> bool:
    """The authors' unknown-question test: empty, or any NEG_WORDS_V3 entry in the lower-cased text."""
    t = text.lower()
    return not t.strip() or any(w in t for w in data.NEG_WORDS_V3)


def lenient_known(text: str, answers) -> bool:
    """The authors' known-question test: any gold answer, or ANY whitespace token of one, is a substring."""
    keys = {a.lower() for a in answers} | {w.lower() for a in answers for w in a.split()}
    return any(k in text.lower() for k in keys if k)


def normalize(text: str) -> str:
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def strict_known(answer: str, answers) -> bool:
    """A whole normalised gold answer in the normalised answer, and the answer is not a refusal."""
    padded = f" {normalize(answer)} "
    return not is_refusal(answer) and any(f" {normalize(a)} " in padded for a in answers if normalize(a))


def checking_well_formed(output: str, sentences) -> bool:
    """Every CHECKING block of the output lists the prompt's requirement sentences, in order, one per line,
    each followed by <fulfilled> or <not fulfilled>; there is at least one block."""
    blocks = output.split(data.CHECKING)[1:]
    want = [[s + mark for mark in ("<fulfilled>", "<not fulfilled>")] for s in sentences]
    for block in blocks:
        lines = block.split("ANSWER:")[0].strip().split("\n")
        if len(lines) != len(want) or not all(line.strip() in ok for line, ok in zip(lines, want)):
            return False
    return bool(blocks)


def cognition_verdict(output: str) -> str:
    t = output.lower()
    return "Insufficient" if "insufficient" in t else "Sufficient" if "sufficient" in t else "neither"


def f1(a, b):
    return 2 * a * b / (a + b) if a + b else 0.0


def score_benchmark(records):
    """Metrics (percent) from the per-prompt verdicts of one model; records carry `kind` and verdicts."""
    known = [r for r in records if r["kind"] == "known"]
    unknown = [r for r in records if r["kind"] == "unknown"]
    pct = lambda rs, hit: 100.0 * sum(map(hit, rs)) / max(len(rs), 1)  # share of rs for which hit(r)
    m = {"n_rows": len(known)}
    for s in ("answer", "paper"):
        k, u = pct(known, lambda r: r[f"known_ok_{s}"]), pct(unknown, lambda r: r[f"refused_{s}"])
        m[s] = {"known": k, "unknown": u, "f1": f1(k, u)}
    m["strict_known"] = pct(known, lambda r: r["strict_ok"])
    m["strict_f1"] = f1(m["strict_known"], m["answer"]["unknown"])
    m["known_breakdown"] = {v: pct(known, lambda r: r["verdict"] == v) for v in ("correct", "wrong", "refused")}
    m["unknown_breakdown"] = {v: pct(unknown, lambda r: r["verdict"] == v) for v in ("refused", "hallucinated")}
    return m


def judge(kind, output, answers):
    ans = answer_part(output)
    rec = {"known_ok_paper": lenient_known(output, answers), "known_ok_answer": lenient_known(ans, answers),
           "refused_paper": is_refusal(output), "refused_answer": is_refusal(ans), "strict_ok": strict_known(ans, answers)}
    if kind == "known":
        rec["verdict"] = "refused" if rec["refused_answer"] else "correct" if rec["strict_ok"] else "wrong"
    else:
        rec["verdict"] = "refused" if rec["refused_answer"] else "hallucinated"
    return rec


# ---- running one model ----

def model_prompts(tok, rows, hotpot_items, prefix, template=None):
    """Every prompt one model answers, in its chat template (llama2 unless given): (task, id, kind, token
    ids, reference). The benchmark prompt is LLAMA2_CHAT_EVAL's system and user message."""
    out = []
    for r in rows:
        for kind in ("known", "unknown"):
            q = r[kind + "_question"]
            system, user = data.eval_messages(q, r["context"], prefix)
            out.append(("benchmark", r["id"], kind, data.encode_chat(tok, user, template=template, system=system)[0],
                        r["known_answers"]))
            out.append(("cognition", r["id"], kind,
                        data.encode_chat(tok, data.cognition_prompt(q, r["context"]), template=template)[0],
                        data.STAGE1_TARGETS[kind]))
    for rec in hotpot_items:
        out.append(("instruction", rec["id"], data.INSTRUCTIONS[rec["instruction"]][0],
                    data.encode_chat(tok, rec["prompt"], template=template)[0], (rec["instruction"], rec["slot"])))
    return out


def evaluate_model(cfg, name, model, tok, rows, hotpot_items, prefix, autocast, template=None):
    template = template or data.TEMPLATES["llama2"]
    prompts = model_prompts(tok, rows, hotpot_items, prefix, template)
    room = model.args.max_position_embeddings - cfg.max_new_tokens  # the longest prompt the model can continue
    fits = [len(p[3]) <= room for p in prompts]
    if sum(fits) < len(prompts):
        print(f"{len(prompts) - sum(fits)} of {len(prompts)} prompts skipped: longer than {room} tokens (the model's "
              f"{model.args.max_position_embeddings} positions less --max-new-tokens {cfg.max_new_tokens}); "
              "their records say \"skipped\"")
    outputs = iter(generate(model, [p[3] for p, ok in zip(prompts, fits) if ok], cfg.max_new_tokens,
                            template.stop_id(tok), cfg.batch_size, progress=True, autocast=autocast))
    records, cog_ok, cog_n, inst_ok, inst_n, formed = [], 0, 0, 0, 0, 0
    for (task, rid, kind, ids, ref), ok in zip(prompts, fits):
        if not ok:  # not scored: it counts neither for nor against the model
            records.append({"model": name, "task": task, "id": rid, "kind": kind,
                            "skipped": f"prompt of {len(ids)} tokens"})
            continue
        new = next(outputs)
        text = tok.decode(new)
        rec = {"model": name, "task": task, "id": rid, "kind": kind, "output": text,
               "hit_token_limit": len(new) >= cfg.max_new_tokens}
        if task == "benchmark":
            rec.update(judge(kind, text, ref), answers=ref)
        elif task == "cognition":
            rec.update(expected=ref, verdict=cognition_verdict(text))
            cog_ok, cog_n = cog_ok + (rec["verdict"] == ref), cog_n + 1
        else:
            index, slot = ref
            rec["passed"] = data.INSTRUCTIONS[index][2](answer_part(text))
            rec["checking_well_formed"] = checking_well_formed(text, data.requirement_sentences(kind, slot))
            inst_ok, inst_n, formed = inst_ok + rec["passed"], inst_n + 1, formed + rec["checking_well_formed"]
        records.append(rec)
    metrics = score_benchmark([r for r in records if r["task"] == "benchmark" and "skipped" not in r])
    if not all(fits):
        metrics["skipped_prompts"] = len(fits) - sum(fits)
    metrics["stage1_accuracy"] = 100.0 * cog_ok / max(cog_n, 1)
    metrics["instruction_pass"] = 100.0 * inst_ok / inst_n if inst_n else None
    metrics["checking_well_formed"] = 100.0 * formed / inst_n if inst_n else None
    metrics["task_prefix"] = prefix
    return metrics, records


def find_models(cfg):
    """(name, label, directory, authors' numbers) for the given model, or for each run present under out/."""
    if cfg.model:
        name = os.path.basename(os.path.normpath(cfg.adapter)) if cfg.adapter else "base"
        return [(name, name, cfg.adapter or cfg.model, None)]
    found = [(n, label, os.path.join(cfg.out_root, n), paper) for n, label, _, paper in RUNS[1:]
             if os.path.isdir(os.path.join(cfg.out_root, n))]
    bases = sorted({lora.read_lineage(path)["base"] for _, _, path, _ in found}) or [tinyworld.BASE]
    if len(bases) > 1:
        raise CheckpointError(f"{cfg.out_root}: its runs were trained on different bases ({', '.join(bases)}); "
                              "evaluate each with --model BASE --adapter RUN")
    if os.path.isdir(bases[0]):  # the base row: the model the runs were trained on
        found.insert(0, ("base", RUNS[0][1], bases[0], RUNS[0][3]))
    if not found:
        raise CheckpointError(f"{cfg.out_root}: no trained models found and no {tinyworld.BASE}; run "
                              "`python train.py --stage 1` (tiny world) or pass --model")
    return found


def load(cfg, path, device, dtype):
    load_base = lambda p: Llama.from_pretrained(p, device=device, dtype=dtype)
    if cfg.model and cfg.adapter and not os.path.isfile(os.path.join(cfg.adapter, "lineage.json")):
        return lora.load_adapter(load_base(cfg.model), cfg.adapter), cfg.model, True  # a foreign PEFT adapter
    if cfg.model and not cfg.adapter:
        return load_base(cfg.model), cfg.model, False
    if cfg.model:
        lora.require_base(cfg.adapter, cfg.model, "--adapter")
    model, lin = lora.load_trained(path, load_base, merge_first=not cfg.paper_quirk)
    return model, lin["base"], lin["adapter"]


def fmt(x):
    return "-" if x is None else f"{x:.1f}"


def table(results, labels, cfg):
    order = [cfg.scoring, "paper" if cfg.scoring == "answer" else "answer"]
    head = ("| model | " + " | ".join(f"known / unknown / F1 ({s} scoring)" for s in order) +
            " | strict known / F1 | known: correct / wrong / refused | unknown: refused / hallucinated "
            "| stage-1 acc | instruction pass | CHECKING well-formed | rows |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, m in results.items():
        cells = [" / ".join(fmt(m[s][k]) for k in ("known", "unknown", "f1")) for s in order]
        cells.append(f"{fmt(m['strict_known'])} / {fmt(m['strict_f1'])}")
        cells.append(" / ".join(fmt(v) for v in m["known_breakdown"].values()))
        cells.append(" / ".join(fmt(v) for v in m["unknown_breakdown"].values()))
        cells += [fmt(m["stage1_accuracy"]), fmt(m["instruction_pass"]), fmt(m["checking_well_formed"]), str(m["n_rows"])]
        lines.append(f"| {labels[name]} | " + " | ".join(cells) + " |")
    theirs = ["", "The authors' numbers (Llama-2-7B-chat, paper scoring, their train=test rows; not ours):", "",
              "| model | known | unknown | F1 |", "|---|---|---|---|"]
    theirs += [f"| {label} | {p[0]} | {p[1]} | {p[2]} |" for _, _, label, p in RUNS] + ["| GPT-4 | 79.6 | 83.6 | 81.6 |"]
    return "\n".join(lines + theirs)


def run(cfg: EvalConfig):
    tiny = not cfg.model
    cfg.asqa = cfg.asqa or (os.path.join(tinyworld.DATA, "ASQA.json") if tiny else "")
    cfg.hotpot = cfg.hotpot or (os.path.join(tinyworld.DATA, "hotpot_train_v1.1.json") if tiny else "")
    if not cfg.asqa:
        raise data.DataError("--asqa ASQA.json is required with --model")
    if tiny and not os.path.exists(cfg.asqa):
        tinyworld.write(tinyworld.DATA)
    device, dtype, autocast, why = resolve_device(cfg.device, cfg.dtype)
    print(f"precision: {why}")
    rows = [r for r in data.build_benchmark(cfg.asqa, cfg.filter) if cfg.split == "all" or r["split"] == "test"]
    rows = rows[:cfg.max_rows] if cfg.max_rows else rows
    items = (data.stage2_records(cfg.hotpot, cfg.instruction_items, start=cfg.instruction_start, seed=1)
             if cfg.hotpot and cfg.instruction_items else [])
    print(f"{len(rows)} benchmark rows ({cfg.split} split), {len(items)} held-out instruction items")
    out_dir = os.path.join(cfg.out_root, "eval")
    os.makedirs(out_dir, exist_ok=True)
    results, labels = {}, {}
    for name, label, path, _paper in find_models(cfg):
        model, base, tuned = load(cfg, path, device, dtype)
        tok, template = data.Tokenizer(base), data.chat_template(base, cfg.template)
        tok.check_vocab(model.args.vocab_size)
        prefix = tuned if cfg.task_prefix == "auto" else cfg.task_prefix == "on"
        print(f"== {label} ({path}), {template.name} chat template, task prefix {'on' if prefix else 'off'}")
        results[name], records = evaluate_model(cfg, name, model, tok, rows, items, prefix, autocast, template)
        labels[name] = label
        data.write_jsonl(os.path.join(out_dir, f"{name}.jsonl"), records)
        del model
    md = table(results, labels, cfg)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"config": dataclasses.asdict(cfg), "results": results}, f, indent=1)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    return results


LIMITS = {**dict.fromkeys(("max_new_tokens", "batch_size"), ">= 1"),
          **dict.fromkeys(("max_rows", "instruction_items", "instruction_start"), ">= 0"),
          "device": "auto, cpu or cuda[:N] (with a visible GPU)"}
CHOICES = {"split": ("test", "all"), "scoring": ("answer", "paper"), "task_prefix": ("on", "off", "auto"),
           "filter": ("paper", "strict"), "dtype": ("auto", "float32", "bfloat16"), "template": ("auto", *data.TEMPLATES)}


def parse_config(argv=None):
    ap = config_parser(EvalConfig, __doc__, LIMITS, CHOICES)
    cfg = EvalConfig(**vars(ap.parse_args(argv)))
    check_limits(ap, cfg, LIMITS)
    return cfg


def main(argv=None):
    try:
        return run(parse_config(argv))
    except (CheckpointError, lora.AdapterError, data.DataError) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("error: interrupted; results.json and results.md were not written (the <model>.jsonl files of "
                 "models finished before it were)")


if __name__ == "__main__":
    main()
