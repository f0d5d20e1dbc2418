"""The two-sided refusal scorecard of one model, with bootstrap intervals.

    python scorecard.py out/eval/stage2.jsonl [--base out/eval/base.jsonl] [--bootstrap 1000] [--seed 0]

From one model's benchmark records (the task == "benchmark" lines eval.py writes to out/eval/<model>.jsonl),
by answer scoring. A positive is an unknown question (the right reply is 'Not Provided'), a prediction is a
refusal (`refused_answer`). In percent:

    refusal_precision  refusals that were on unknown questions: TP / (TP + FP); 0 for a model that never refuses
    refusal_recall     unknown questions refused: TP / unknown (the paper's "unknown" accuracy)
    refusal_f1         the harmonic mean of those two (AbstentionBench's abstention F1)
    over_refusal       known questions refused: FP / known (Alignment for Honesty's over-conservativeness)
    hallucination      unknown questions answered: FN / unknown = 100 - recall
    f1                 the paper's F1: the harmonic mean of known accuracy (known_ok_answer) and refusal_recall
    f1_ci, refusal_f1_ci   95% percentile bootstrap intervals [low, high] of f1 and refusal_f1

A model that refuses everything has recall 100 and over-refusal 100: precision and over-refusal say what
the paper's unknown accuracy alone hides. The bootstrap resamples ASQA records, not rows: the rows of one
record share passages and questions, so they are not independent. Each of --bootstrap resamples draws as
many records as there are, with replacement (numpy's default_rng(seed)); the same rows and seed give every
model the same draws, so a difference of two models is paired: f1_difference's interval is that of the
per-draw differences.
"""
import argparse
import json
import os

import numpy as np

from files import read_jsonl

FIELDS = ("known", "known_ok", "known_refused", "unknown", "unknown_refused")  # counts kept per ASQA record


def asqa_id(row_id: str) -> str:
    """The ASQA record of a benchmark row id (data.build_benchmark's f"{asqa_id}-{i}-{j}"). An ASQA id may hold
    dashes itself: only the last two are the row's."""
    return row_id.rsplit("-", 2)[0]


def f1(a, b):
    return 2 * a * b / (a + b) if a + b else 0.0


def group(records):
    """{ASQA record: counts (FIELDS)} of one model's benchmark records, keys sorted. A record from before eval.py
    wrote `asqa_id` is grouped by its row id."""
    out = {}
    for r in records:
        if r["task"] != "benchmark":
            continue
        c = out.setdefault(r.get("asqa_id") or asqa_id(r["id"]), [0] * len(FIELDS))
        if r["kind"] == "known":
            c[0], c[1], c[2] = c[0] + 1, c[1] + bool(r["known_ok_answer"]), c[2] + bool(r["refused_answer"])
        else:
            c[3], c[4] = c[3] + 1, c[4] + bool(r["refused_answer"])
    return dict(sorted(out.items()))


def metrics(counts):
    """The point metrics (percent) of summed counts (FIELDS)."""
    known, known_ok, fp, unknown, tp = (int(c) for c in counts)
    pct = lambda a, b: 100.0 * a / b if b else 0.0
    precision, recall = pct(tp, tp + fp), pct(tp, unknown)
    return dict(refusal_precision=precision, refusal_recall=recall, refusal_f1=f1(precision, recall),
                over_refusal=pct(fp, known), hallucination=pct(unknown - tp, unknown),
                f1=f1(pct(known_ok, known), recall))


def resampled(groups, n, seed):
    """The metrics of each of n bootstrap resamples of the ASQA records (draws from default_rng(seed))."""
    counts = np.array(list(groups.values()), dtype=np.int64)
    draws = np.random.default_rng(seed).integers(0, len(counts), size=(n, len(counts)))
    return [metrics(c) for c in counts[draws].sum(axis=1)]


def interval(values):
    low, high = np.percentile(np.array(values, dtype=np.float64), [2.5, 97.5])
    return [float(low), float(high)]


def scorecard(records, n=1000, seed=0):
    """One model's scorecard: the metrics, their intervals, and what they were computed on."""
    groups = group(records)
    if not groups:
        raise ValueError("no benchmark records to score")
    card = metrics(np.sum(list(groups.values()), axis=0))  # the point estimates, on every record
    boot = resampled(groups, n, seed)
    card.update(f1_ci=interval([m["f1"] for m in boot]), refusal_f1_ci=interval([m["refusal_f1"] for m in boot]),
                asqa_records=len(groups), rows=sum(c[0] for c in groups.values()), bootstrap=n, seed=seed)
    return card


def f1_difference(records, base_records, n=1000, seed=0):
    """{"f1_diff": the paper's F1 of the model less the base's, "f1_diff_ci": [low, high]}, paired: each resample
    draws the same ASQA records for both. Both must have been asked the same records."""
    mine, base = group(records), group(base_records)
    if list(mine) != list(base):
        raise ValueError("a paired difference needs both models' answers on the same ASQA records")
    diffs = [a["f1"] - b["f1"] for a, b in zip(resampled(mine, n, seed), resampled(base, n, seed))]
    point = metrics(np.sum(list(mine.values()), axis=0))["f1"] - metrics(np.sum(list(base.values()), axis=0))["f1"]
    return {"f1_diff": point, "f1_diff_ci": interval(diffs)}


def differences(bench, n=1000, seed=0, base="base"):
    """{model: f1_difference from the base row} for every other model of one table ({} without a base row)."""
    return {name: f1_difference(recs, bench[base], n, seed) for name, recs in bench.items()
            if base in bench and name != base}


def read(path):
    """The records of a finished <model>.jsonl (eval.py rewrites it whole at the end of a model): one that is
    missing or holds an unreadable line is refused, since a scorecard of part of it would pass for the whole."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    records, broken = read_jsonl(path)
    if broken:
        raise ValueError(f"{path}: {broken} unreadable line(s); rerun eval.py to finish it")
    return records


def recompute(path, n=1000, seed=0, base_path=None):
    """results.json's scorecard of a model from its <model>.jsonl alone (and its difference from the base's)."""
    records = read(path)
    card = scorecard(records, n, seed)
    return card if base_path is None else dict(card, **f1_difference(records, read(base_path), n, seed))


def table(results, labels, diffs):
    """results.md's second table: each model's scorecard (results[name]["scorecard"]) and F1 difference."""
    fmt = lambda x: f"{x:.1f}"
    ci = lambda x, lh: f"{fmt(x)} [{fmt(lh[0])}, {fmt(lh[1])}]"
    any_card = next(iter(results.values()))["scorecard"]
    lines = [f"Refusal scorecard (answer scoring; positive: an unknown question, prediction: a refusal), percent, "
             f"with 95% bootstrap intervals over ASQA records ({any_card['bootstrap']} resamples, seed "
             f"{any_card['seed']}; differences paired on the same draws):", "",
             "| model | F1 [95% CI] | F1 - base [95% CI] | refusal precision | refusal recall | refusal F1 [95% CI] "
             "| over-refusal | hallucination | ASQA records |", "|---" * 9 + "|"]
    for name, m in results.items():
        c, d = m["scorecard"], diffs.get(name)
        cells = [ci(c["f1"], c["f1_ci"]), ci(d["f1_diff"], d["f1_diff_ci"]) if d else "-",
                 fmt(c["refusal_precision"]), fmt(c["refusal_recall"]), ci(c["refusal_f1"], c["refusal_f1_ci"]),
                 fmt(c["over_refusal"]), fmt(c["hallucination"]), str(c["asqa_records"])]
        lines.append(f"| {labels[name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("jsonl")
    ap.add_argument("--base", help="the base's <model>.jsonl: also the paired F1 difference from it")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(json.dumps(recompute(a.jsonl, a.bootstrap, a.seed, a.base), indent=1))
