"""Evaluate: contextual QA on known vs unknown questions (docs/method.md sections 6-7), scored two ways.

    python eval.py                                    # every model found under out/, on the tiny world
    python eval.py --model Llama-2-7b-chat-hf --asqa ASQA.json --adapter out/stage2 [--split all]
    python eval.py --adapter out/stage2               # one run of train.py, on the base its lineage.json names

Each benchmark row is asked twice over the same passage: its known question (answer in the passage) and
its unknown question (answered by a sibling passage: the right reply is 'Not Provided').
- paper scoring reads the raw output, as the authors did. A stage-2 model's CHECKING review repeats
  "...please answer it with 'Not Provided'", which the refusal word list counts as a refusal.
- answer scoring (our default) reads only the answer: the text before the first CHECKING:, or after the
  last ANSWER: when the model revised itself.
Both are always computed and printed; --scoring picks which leads the table. Strict metrics, the error
breakdown, the stage-1 (Sufficient/Insufficient) view and instruction adherence come beside them, and a
second table: the two-sided refusal scorecard with bootstrap intervals over ASQA records (scorecard.py).

Nothing is lost to an interruption (Ctrl-C, SIGTERM, a full disk): prompts run in batches of at most
--batch-tokens KV-cache tokens, and each batch's records are appended to out/eval/<model>.jsonl as it ends
(whole lines or none). Rerun the same command and it skips every prompt already answered (a prompt_key
hashes the model's files, the decoding settings and the prompt), recomputes nothing for a finished model, and
writes the files an uninterrupted run would have (given the same --batch-tokens: the same batches).

A trained run is rebuilt as its lineage.json records (lora.load_trained): stage 1 under a stage-2 adapter is
a frozen fp32 branch, or merged into the weights if that run was trained with train.py --merge-stage1.
"""
import dataclasses
import hashlib
import json
import os
import signal
import string
import sys
from dataclasses import dataclass

import torch
from tqdm import tqdm

import data
import lora
import runs
import plan
import scorecard
import tinyworld
from scorecard import f1
from cli import check_limits, config_parser, interrupted
from files import OutError, WriteError, append_text, check_out_dir, file_digest, read_jsonl, write_text
from device import resolve_device
from generate import generate, token_batches
from model import CheckpointError, Llama, ModelArgs, read_config


@dataclass
class EvalConfig:
    model: str = ""  # base checkpoint; default: the tiny world's shipped tiny/base
    adapter: str = ""  # a train.py run (its lineage.json names the base; --model optional) or a PEFT adapter for --model
    asqa: str = ""  # default data/tiny/ASQA.json
    hotpot: str = ""  # for instruction adherence; default data/tiny/hotpot_train_v1.1.json
    out_root: str = "out"  # where trained models are found and out/eval is written
    split: str = "test"  # test (rows whose ASQA record no training saw) | all (as the authors did)
    filter: str = "paper"  # benchmark rows: paper (the authors' filter) | strict (see train.py --help)
    scoring: str = "answer"  # answer | paper: which scoring leads the table
    task_prefix: str = "auto"  # on | off | auto (TASK_ASSIGNMENT_PREFIX for fine-tuned models only)
    paper_quirk: bool = False  # serve a stage-2 adapter on the plain base, as the authors' Llama-2 code did
    max_new_tokens: int = 200  # greedy decoding stops here or at EOS (the authors' chatgpt.py: max_tokens=200, temperature 0)
    instruction_max_new_tokens: int = 384  # the same for instruction adherence (ours, not the paper's): room for a whole revision (answer, review, ANSWER:, answer, review)
    batch_tokens: int = 0  # KV-cache tokens per batch: prompts x (longest prompt + max new tokens); 0 = derived from the memory plan on CUDA, else 16384
    stop_after_batches: int = 0  # stop, as if interrupted, after this many batches (to try resuming; 0: never)
    max_rows: int = 0  # 0: every row of the split
    instruction_items: int = 100  # held-out HotpotQA items for instruction adherence (0: skip)
    instruction_start: int = 300  # the first item after those stage 2 trained on
    device: str = "auto"  # auto (CUDA if visible) | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto | float32 | bfloat16; auto: bf16 autocast on CUDA and on CPUs with native bf16
    template: str = "auto"  # chat layout: auto (from the model's own chat template) | llama2 | chatml | llama3
    bootstrap: int = 1000  # resamples of the ASQA records for the scorecard's 95 percent intervals (scorecard.py)
    seed: int = 0  # the bootstrap's draws (the same for every model: differences from the base are paired)


# Rows of the paper's table (docs/method.md section 7): the directory train.py writes each run to, our label, the authors'
# label and their numbers (Llama-2-7B-chat; known / unknown / F1). Two baselines the paper lacks: the base
# with the task prefix the fine-tuned models get (no directory: a row whenever the base row is, under
# --task-prefix auto) and `train.py --data refusal` (stage 1's code and budget, known -> answer, unknown ->
# 'Not Provided').
RUNS = [("base", "base", "Llama-2-7B-chat (base)", (79.3, 58.3, 67.2)),
        ("base_prefix", "prompt only (base + task prefix)", "", None),
        ("refusal_sft", "refusal SFT (known -> answer, unknown -> 'Not Provided')", "", None),
        ("stage1", "stage 1 only", "stage 1 only", (52.4, 84.4, 64.6)),
        ("qa_only", "QA only", "QA only (HotpotQA SFT)", (77.5, 58.3, 66.5)),
        ("stage2_only", "stage 2 only", "stage 2 only", (84.8, 59.0, 69.6)),
        ("stage1_qa", "stage 1 -> QA", "stage 1 -> QA", (77.0, 20.9, 32.8)),
        ("stage2", "US-Tuning (stage 1 -> stage 2)", "US-Tuning (stage 1 -> stage 2)", (79.7, 93.0, 85.8))]
REQUIREMENT_ORDER = {sentence: k for k, (sentence, _, _) in enumerate(data.INSTRUCTIONS)}  # the stage-2 pool's order


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

DEFAULT_BATCH_TOKENS = 16384  # ~40 tiny-world benchmark prompts (~195 tokens + 200 new) per batch
HASH_LIMIT = 64 * 2**20  # model files up to this size are hashed; larger ones are known by size and time


class Stopped(Exception):
    """--stop-after-batches was reached: the run ends as an interruption would, its batches kept."""


def prompt_id(task, rid, kind):
    """A prompt's stable name: its task and row, and known/unknown (an instruction item asks once)."""
    return f"{task}:{rid}" if task == "instruction" else f"{task}:{rid}:{kind}"


def fit(tok, template, user, context, room, system=None):
    """The prompt's token ids and its length before a cut (None when it fits in `room` tokens). A longer
    prompt loses the end of its context (data.tokenize_records' plain cut: eval keeps no record of which
    paragraphs are evidence, unlike training's default --truncation evidence); one still too long
    with no context at all (a model with very few positions) keeps its last `room` tokens, where the
    question and the opening for the answer are."""
    ids = data.encode_chat(tok, user, template=template, system=system)[0]
    if room is None or len(ids) <= room:
        return ids, None
    samples, _ = data.tokenize_records(tok, [dict(prompt=user, context=context, output=None, system=system)],
                                       room, template)
    return (samples[0][0] if samples else ids[-room:]), len(ids)


def model_prompts(tok, rows, hotpot_items, prefix, template=None, room=None):
    """Every prompt one model answers, in its chat template (llama2 unless given): (task, id, kind, token
    ids, reference, length before a cut or None); a prompt over `room` tokens is cut by fit(). The
    benchmark prompt is LLAMA2_CHAT_EVAL's system and user message."""
    template = template or data.TEMPLATES["llama2"]
    out = []
    for r in rows:
        for kind in ("known", "unknown"):
            q = r[kind + "_question"]
            system, user = data.eval_messages(q, r["context"], prefix)
            ids, cut = fit(tok, template, user, r["context"], room, system)
            out.append(("benchmark", r["id"], kind, ids, r["known_answers"], cut))
            ids, cut = fit(tok, template, data.cognition_prompt(q, r["context"]), r["context"], room)
            out.append(("cognition", r["id"], kind, ids, data.STAGE1_TARGETS[kind], cut))
    for rec in hotpot_items:
        ids, cut = fit(tok, template, rec["prompt"], rec["context"], room)
        out.append(("instruction", rec["id"], data.INSTRUCTIONS[rec["instruction"]][0], ids,
                    (rec["instruction"], rec["slot"]), cut))
    return out


def model_files(dirs):
    """What the model is built from, cheaply: per directory (base first), the sha256 of each small weight or
    config file (configs, LoRA adapters) and the size and modification time of each large one (a base's
    weights: hashing 13 GB would cost a minute per model)."""
    out = []
    for d in dirs:
        files = {}
        for f in sorted(os.listdir(d)):
            p = os.path.join(d, f)
            if not (f.endswith(".safetensors") or f in ("config.json", "adapter_config.json", "lineage.json",
                                                        "model.safetensors.index.json")) or not os.path.isfile(p):
                continue
            st = os.stat(p)
            files[f] = f"{st.st_size} bytes, mtime {st.st_mtime_ns}" if st.st_size > HASH_LIMIT else file_digest(p)
        out.append(files)
    return out


def new_tokens(cfg, prompt):
    """The generation limit of one prompt: --instruction-max-new-tokens for instruction adherence (a metric of
    ours), --max-new-tokens (the authors' 200) for the benchmark and the stage-1 view."""
    return cfg.instruction_max_new_tokens if prompt[0] == "instruction" else cfg.max_new_tokens


def prompt_keys(settings, prompts, limits):
    """One key per prompt, a hash of everything its output depends on: the model's files, the decoding
    settings, its generation limit, the prompt's id and token ids. A rerun reuses a stored output only under
    the same key."""
    ids = [prompt_id(*p[:3]) for p in prompts]
    if len(set(ids)) < len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise data.DataError(f"two prompts are both {dup!r}: the benchmark or HotpotQA file repeats an id; "
                             "give every record its own id")
    head = json.dumps(settings, sort_keys=True)
    return [hashlib.sha256(f"{head}\n{n}\n{i}\n{p[3]}".encode()).hexdigest()[:16]
            for i, p, n in zip(ids, prompts, limits)]


def record(name, prompt, key, output, hit_limit):
    """The jsonl record of one answered prompt: its output and every verdict on it. A rerun rebuilds it
    from the stored output, so the verdicts always follow this file's scoring."""
    task, rid, kind, ids, ref, cut_from = prompt
    rec = {"model": name, "task": task, "id": rid, "kind": kind, "prompt_id": prompt_id(task, rid, kind),
           "prompt_key": key, "output": output, "hit_token_limit": hit_limit}
    if cut_from:  # the prompt was longer than the model can continue: cut from cut_from to cut_to tokens
        rec.update(cut_from=cut_from, cut_to=len(ids))
    if task == "benchmark":
        rec.update(judge(kind, output, ref), answers=ref, asqa_id=scorecard.asqa_id(rid))  # the bootstrap's unit
    elif task == "cognition":
        rec.update(expected=ref, verdict=cognition_verdict(output))
    else:
        index, slot = ref
        rec["passed"] = data.INSTRUCTIONS[index][2](answer_part(output))
        rec["checking_well_formed"] = checking_well_formed(output, data.requirement_sentences(kind, slot))
    return rec


def jsonl(records):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def read_done(path, keys):
    """{key: stored record} of this run's prompts that `path` (a <model>.jsonl) already answers. A line cut
    off by an interrupted write, or one of another model, settings or prompt (its key is none of `keys`),
    is dropped and the file rewritten without it, so that appending can go on; the file as it was is kept
    as <path>.old."""
    if not os.path.exists(path):
        return {}
    records, broken = read_jsonl(path)
    wanted, done, stale = set(keys), {}, 0
    for rec in records:
        key = rec.get("prompt_key") if isinstance(rec, dict) else None  # None: an eval from before prompt keys
        if key in wanted and key not in done:
            done[key] = rec
        else:
            stale += 1
    if broken or stale:
        why = [f"{broken} unreadable line(s) (a write cut off by an interruption)"] * bool(broken) + \
              [f"{stale} line(s) of another model, settings or prompt"] * bool(stale)
        print(f"{path}: dropping {' and '.join(why)}; their prompts run again (the file as it was: {path}.old)")
        os.replace(path, path + ".old")  # never lose outputs: another model's may be all that is left of it
        write_text(path, jsonl(done.values()))
    return done


def batch_budget(cfg, args, device, dtype):
    """KV-cache tokens one batch may fill: --batch-tokens, else the memory plan's on CUDA, else the default."""
    if cfg.batch_tokens:
        return cfg.batch_tokens
    if device.type == "cuda":  # the whole card less the weights and the plan's reserve (plan.eval_bytes)
        return plan.eval_token_budget(args, torch.cuda.get_device_properties(device).total_memory, dtype)
    return DEFAULT_BATCH_TOKENS


def answer_all(cfg, name, prompts, keys, path, load_model, tok, eos_id, budget, autocast, after_batch):
    """Every prompt's record, in prompt order. Prompts run in batches of at most `budget` KV-cache tokens,
    similar lengths together; each batch's records are appended to `path` (flushed, synced) as it ends, so an
    interruption loses one batch at most and a rerun with the same keys skips what is done. The model is
    loaded (load_model()) only if some prompt is left. A batch holds prompts of one generation limit
    (new_tokens)."""
    done = read_done(path, keys)
    limits = [new_tokens(cfg, p) for p in prompts]
    batches = []
    for n in sorted(set(limits)):
        group = [i for i in range(len(prompts)) if limits[i] == n]
        batches += [[group[j] for j in b] for b in token_batches([len(prompts[i][3]) for i in group], n, budget)]
    todo = [b for b in batches if any(keys[i] not in done for i in b)]
    if not todo:
        print(f"{path}: all {len(prompts)} prompts already answered; not recomputed")
    else:
        print(f"{len(batches)} batches of at most {budget} KV-cache tokens (--batch-tokens), {len(todo)} to run"
              + (f"; {len(done)} of {len(prompts)} prompts already in {path}" if done else ""))
        model = load_model()
        with tqdm(todo, desc="generate") as bar:  # closed (its line ended) on an interruption too
            for batch in bar:
                # a batch cut off halfway runs whole again: the same batch gives the same tokens
                n = limits[batch[0]]
                outs = generate(model, [prompts[i][3] for i in batch], n, eos_id, batch_size=len(batch),
                                autocast=autocast)
                new = {keys[i]: record(name, prompts[i], keys[i], tok.decode(out), len(out) >= n)
                       for i, out in zip(batch, outs) if keys[i] not in done}
                append_text(path, jsonl(new.values()), sync=True)  # whole lines or none (a full disk: WriteError)
                done.update(new)
                after_batch()
        del model
    records = [record(name, p, k, done[k]["output"], done[k]["hit_token_limit"]) for p, k in zip(prompts, keys)]
    write_text(path, jsonl(records))  # the finished file, in prompt order
    return records


def summarize(records, prefix):
    """One model's metrics from its records."""
    metrics = score_benchmark([r for r in records if r["task"] == "benchmark"])
    cog = [r for r in records if r["task"] == "cognition"]
    inst = [r for r in records if r["task"] == "instruction"]
    metrics["cut_prompts"] = sum("cut_from" in r for r in records)
    metrics["stage1_accuracy"] = 100.0 * sum(r["verdict"] == r["expected"] for r in cog) / max(len(cog), 1)
    metrics["instruction_pass"] = 100.0 * sum(r["passed"] for r in inst) / len(inst) if inst else None
    metrics["checking_well_formed"] = 100.0 * sum(r["checking_well_formed"] for r in inst) / len(inst) if inst else None
    metrics["instruction_items"] = len(inst)
    metrics["instruction_cut"] = sum(r["hit_token_limit"] for r in inst)  # reached --instruction-max-new-tokens
    by_kind = {}  # requirement sentence -> [items, passed, well-formed, cut], in the pool's order
    for r in sorted(inst, key=lambda r: REQUIREMENT_ORDER[r["kind"]]):
        counts = by_kind.setdefault(r["kind"], [0, 0, 0, 0])
        for k, v in enumerate((1, r["passed"], r["checking_well_formed"], r["hit_token_limit"])):
            counts[k] += int(v)
    metrics["instruction_by_requirement"] = by_kind
    metrics["task_prefix"] = prefix
    return metrics


def find_models(cfg):
    """(name, label, directory, authors' numbers) for the given model, or for each run present under out/."""
    if cfg.adapter and not cfg.model:  # a train.py run alone: its lineage.json names its base
        if not os.path.isfile(os.path.join(cfg.adapter, "lineage.json")):
            raise CheckpointError(f"{cfg.adapter}: no lineage.json, so its base is unknown; pass --model BASE "
                                  "(a PEFT adapter) or a directory train.py wrote")
        runs.check_base(cfg.adapter, runs.read_lineage(cfg.adapter))
    if cfg.model or cfg.adapter:
        name = os.path.basename(os.path.normpath(cfg.adapter)) if cfg.adapter else "base"
        return [(name, name, cfg.adapter or cfg.model, None)]
    found = [(n, label, os.path.join(cfg.out_root, n), paper) for n, label, _, paper in RUNS[2:]
             if os.path.isdir(os.path.join(cfg.out_root, n))]
    lineages = {path: runs.read_lineage(path) for _, _, path, _ in found}
    bases = sorted({lin["base"] for lin in lineages.values()}) or [tinyworld.BASE]
    if len(bases) > 1:
        raise CheckpointError(f"{cfg.out_root}: its runs were trained on different bases ({', '.join(bases)}); "
                              "evaluate each with --model BASE --adapter RUN")
    for path, lin in lineages.items():  # before any model runs: each on its base as it was trained
        runs.check_base(path, lin)
    if os.path.isdir(bases[0]):  # the base row: the model the runs were trained on; then prompt only (base_prefix)
        found[:0] = [("base", RUNS[0][1], bases[0], RUNS[0][3])] + [("base_prefix", RUNS[1][1], bases[0], None)] * (
            cfg.task_prefix == "auto")
    if not found:
        raise CheckpointError(f"{cfg.out_root}: no trained models found and no {tinyworld.BASE}; run "
                              "`python train.py --stage 1` (tiny world) or pass --model")
    return found


def lineage(cfg, path):
    """(base directory, fine-tuned?, the directories the model is built from, base first), reading no weights."""
    if cfg.model and cfg.adapter and not os.path.isfile(os.path.join(cfg.adapter, "lineage.json")):
        return cfg.model, True, [cfg.model, cfg.adapter]  # a foreign PEFT adapter
    if cfg.model and not cfg.adapter:
        return cfg.model, False, [cfg.model]
    lin = runs.require_base(cfg.adapter, cfg.model, "--adapter") if cfg.model else runs.read_lineage(path)
    merged = [] if cfg.paper_quirk else lin["merged"]
    return lin["base"], lin["adapter"], [lin["base"], *merged] + [path] * lin["adapter"]


def load(cfg, path, device, dtype):
    load_base = lambda p: Llama.from_pretrained(p, device=device, dtype=dtype)
    if cfg.model and cfg.adapter and not os.path.isfile(os.path.join(cfg.adapter, "lineage.json")):
        return lora.load_adapter(load_base(cfg.model), cfg.adapter)  # a foreign PEFT adapter
    if cfg.model and not cfg.adapter:
        return load_base(cfg.model)
    return lora.load_trained(path, load_base, merge_first=not cfg.paper_quirk)[0]


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
    cut = [f"{labels[name]} {m['instruction_cut']} of {m['instruction_items']}" for name, m in results.items()
           if m.get("instruction_cut")]
    if cut:  # a revision (answer, review, ANSWER:, answer, review) can outgrow the limit: its second block is cut
        lines += ["", f"Instruction outputs that reached --instruction-max-new-tokens {cfg.instruction_max_new_tokens} "
                  "(their last CHECKING "
                  f"block may be cut, and a cut block is not well-formed): {', '.join(cut)}."]
    kinds = [k for k in REQUIREMENT_ORDER if any(k in m.get("instruction_by_requirement", {}) for m in results.values())]
    if kinds:  # which requirements a model fails: the pass rate's make-up
        named = [name for name, m in results.items() if m.get("instruction_items")]
        lines += ["", "Held-out instruction items by requirement: passed / CHECKING well-formed / items, and in "
                  "brackets those that reached --instruction-max-new-tokens:", "",
                  "| requirement | " + " | ".join(labels[n] for n in named) + " |", "|---|" + "---|" * len(named)]
        for k in kinds:
            cells = []
            for n in named:
                items, passed, formed, cut = results[n]["instruction_by_requirement"].get(k, (0, 0, 0, 0))
                cells.append(f"{passed} / {formed} / {items}" + (f" ({cut})" if cut else "") if items else "-")
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
    theirs = ["", "The authors' numbers (Llama-2-7B-chat, paper scoring, their train=test rows; not ours):", "",
              "| model | known | unknown | F1 |", "|---|---|---|---|"]
    theirs += [f"| {label} | {p[0]} | {p[1]} | {p[2]} |" for _, _, label, p in RUNS if p] + ["| GPT-4 | 79.6 | 83.6 | 81.6 |"]
    return "\n".join(lines + theirs)


def run(cfg: EvalConfig, at=None):
    """Evaluate; `at` (a dict) is kept up to date with the model being answered: its label, <model>.jsonl and
    prompt keys (go_on tells from it what an interrupted run kept)."""
    at = {} if at is None else at
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
    results, labels, bench, batches_run = {}, {}, {}, [0]

    def after_batch():
        batches_run[0] += 1
        if batches_run[0] == cfg.stop_after_batches:
            raise Stopped(f"stopped after {batches_run[0]} batches (--stop-after-batches); rerun without it to "
                          f"finish: the answered prompts are kept in {out_dir}/<model>.jsonl")

    for name, label, path, _paper in find_models(cfg):
        base, tuned, dirs = lineage(cfg, path)
        tok, template = data.Tokenizer(base), data.chat_template(base, cfg.template)
        args = ModelArgs.from_config(read_config(base), os.path.join(base, "config.json"))
        tok.check_vocab(args.vocab_size)
        prefix = (tuned or name == "base_prefix") if cfg.task_prefix == "auto" else cfg.task_prefix == "on"
        print(f"== {label} ({path}), {template.name} chat template, task prefix {'on' if prefix else 'off'}")
        most = max(cfg.max_new_tokens, cfg.instruction_max_new_tokens if items else 0)
        room = args.max_position_embeddings - most  # the longest prompt the model can continue
        if room < 1:
            raise CheckpointError(f"{base}/config.json: {args.max_position_embeddings} positions leave no room for "
                                  f"a prompt before {most} new tokens; lower --max-new-tokens or "
                                  "--instruction-max-new-tokens")
        prompts = model_prompts(tok, rows, items, prefix, template, room)
        cut = sum(p[5] is not None for p in prompts)
        if cut:
            print(f"{cut} of {len(prompts)} prompts cut to {room} tokens (the model's {args.max_position_embeddings} "
                  f"positions less {most} new tokens): their contexts lose their ends (as "
                  "--truncation paper cuts in training); their records say cut_from / cut_to, results cut_prompts")
        eos_id = template.stop_id(tok)
        settings = dict(files=model_files(dirs), eos_id=eos_id, device=device.type, dtype=str(dtype),
                        autocast=autocast)
        keys = prompt_keys(settings, prompts, [new_tokens(cfg, p) for p in prompts])
        file = os.path.join(out_dir, f"{name}.jsonl")
        at.update(label=label, jsonl=file, keys=set(keys))
        records = answer_all(cfg, name, prompts, keys, file, lambda: load(cfg, path, device, dtype), tok, eos_id,
                             batch_budget(cfg, args, device, dtype), autocast, after_batch)
        results[name], labels[name] = summarize(records, prefix), label
        bench[name] = [r for r in records if r["task"] == "benchmark"]
        results[name]["scorecard"] = scorecard.scorecard(bench[name], cfg.bootstrap, cfg.seed)  # from <name>.jsonl
    diffs = scorecard.differences(bench, cfg.bootstrap, cfg.seed)  # F1 less the base row's, paired
    md = table(results, labels, cfg) + "\n\n" + scorecard.table(results, labels, diffs)
    keep_other_table(out_dir, results)
    write_text(os.path.join(out_dir, "results.json"), json.dumps(
        {"config": dataclasses.asdict(cfg), "results": results, "f1_difference_from_base": diffs}, indent=1))
    write_text(os.path.join(out_dir, "results.md"), md + "\n")
    print(md)
    return results


# what eval.py writes in <out root>/eval besides a <model>.jsonl per model (and each file's .tmp)
EVAL_FILES = ("results.json", "results.md", "results.json.old", "results.md.old")


def keep_other_table(out_dir, results):
    """A table of other models (the demo's, before `--adapter out/stage2` alone) is kept as results.*.old."""
    file = os.path.join(out_dir, "results.json")
    try:
        with open(file, encoding="utf-8") as f:
            before = json.load(f)["results"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # none, or not a table this script wrote: nothing worth keeping
    if isinstance(before, dict) and set(before) != set(results):
        for name in ("results.json", "results.md"):
            if os.path.exists(os.path.join(out_dir, name)):
                os.replace(os.path.join(out_dir, name), os.path.join(out_dir, name + ".old"))
        print(f"{file}: the table of {', '.join(before)} is kept as results.json.old / results.md.old")


LIMITS = {"max_new_tokens": ">= 1", "instruction_max_new_tokens": ">= 1", "bootstrap": ">= 1",
          **dict.fromkeys(("batch_tokens", "stop_after_batches", "max_rows", "instruction_items",
                           "instruction_start", "seed"), ">= 0"),
          "device": "auto, cpu or cuda[:N] (with a visible GPU)"}
CHOICES = {"split": ("test", "all"), "scoring": ("answer", "paper"), "task_prefix": ("on", "off", "auto"),
           "filter": ("paper", "strict"), "dtype": ("auto", "float32", "bfloat16"), "template": ("auto", *data.TEMPLATES)}


def parse_config(argv=None):
    ap = config_parser(EvalConfig, __doc__, LIMITS, CHOICES)
    cfg = EvalConfig(**vars(ap.parse_args(argv)))
    check_limits(ap, cfg, LIMITS)
    return cfg


def go_on(at):
    """What an eval that stopped short kept (run's `at`), and how it goes on: a rerun skips every prompt answered."""
    if not at:
        return "no prompt was answered yet: rerun the command"
    stored = read_jsonl(at["jsonl"])[0] if os.path.exists(at["jsonl"]) else []
    n = len(at["keys"] & {r.get("prompt_key") for r in stored if isinstance(r, dict)})
    return (f"{n} of the {len(at['keys'])} prompts of {at['label']} answered are kept in {at['jsonl']}: rerun the "
            "same command to continue")


def main(argv=None):
    at, sigterm = {}, signal.signal(signal.SIGTERM, interrupted)
    try:
        cfg = parse_config(argv)
        check_out_dir("--out-root", cfg.out_root, os.path.join(cfg.out_root, "eval"), writer="eval.py",
                      ours=lambda n: n.endswith((".jsonl", ".tmp", ".old")) or n in EVAL_FILES)  # before any work
        return run(cfg, at)
    except (CheckpointError, lora.AdapterError, runs.RunError, data.DataError, OutError) as e:
        sys.exit(f"error: {e}")
    except Stopped as e:
        print(e)
    except WriteError as e:  # a full disk: what was written before is whole
        sys.exit(f"error: {e}; free disk space; {go_on(at)}")
    except KeyboardInterrupt:
        sys.exit(f"error: interrupted; {go_on(at)}")
    finally:
        signal.signal(signal.SIGTERM, sigterm)


if __name__ == "__main__":
    main()
