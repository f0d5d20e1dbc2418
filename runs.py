"""A training run's bookkeeping, in one place: the --out directory it claims and locks, the checkpoint it
writes atomically and resumes from, and the lineage.json that says which base and which earlier adapters a
trained directory stands on (so eval.py and --init rebuild exactly the model that was trained).

    lock = claim_out(cfg)                          # refuse a finished / unfinished / busy --out; lock it
    save_checkpoint(out, params, opt, sched, step) # out/checkpoint, whole or the previous one
    step = load_checkpoint(out, params, opt, sched)   # --resume
    write_lineage(out, base, merged)               # beside the adapter; read_lineage / require_base read it
"""
import dataclasses
import json
import os
import pickle
import shutil

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from files import base_changes, base_identity, check_out_dir, complete_lines, file_digest, read_json, write_text


class RunError(RuntimeError):
    """A run directory we cannot use as asked; the message names the file and the fix (scripts print one line)."""


# ---- the checkpoint: written whole, resumed exactly ----

CHECKPOINT_DIRS = ("checkpoint", "checkpoint.tmp", "checkpoint.old")


def save_checkpoint(out, params, opt, sched, step):
    """Write out/checkpoint atomically: a full new one under a temporary name, then two renames (a crash between
    them leaves a complete checkpoint.tmp beside checkpoint.old, which recover_checkpoint finishes)."""
    final, tmp, old = (os.path.join(out, n) for n in CHECKPOINT_DIRS)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.makedirs(tmp)
        save_file({k: p.detach().contiguous() for k, p in params.items()}, os.path.join(tmp, "trainable.safetensors"),
                  metadata={"step": str(step)})
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step,
                    "rng": torch.get_rng_state()}, os.path.join(tmp, "state.pt"))
    except (OSError, RuntimeError, SafetensorError) as e:  # a full disk: the previous checkpoint is still whole
        shutil.rmtree(tmp, ignore_errors=True)
        raise RunError(f"{tmp}: could not write the checkpoint of step {step} ({str(e).splitlines()[0]}); "
                       "free disk space, then rerun with --resume") from None
    if os.path.exists(final):
        shutil.rmtree(old, ignore_errors=True)  # left by a crash just before the end of an earlier save
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def recover_checkpoint(out):
    """After a crash between save_checkpoint's renames there is checkpoint.old but no checkpoint: the newer
    checkpoint.tmp is complete (it was written before the first rename), else checkpoint.old is the latest."""
    final, tmp, old = (os.path.join(out, n) for n in CHECKPOINT_DIRS)
    if not os.path.isdir(final) and os.path.isdir(old):
        try:
            os.replace(tmp if os.path.isdir(tmp) else old, final)
        except FileNotFoundError:  # another rank of the same --resume finished it first
            pass
        shutil.rmtree(old, ignore_errors=True)


def checkpoint_step(out):
    """The step of out/checkpoint (from its tensors' metadata), or None when there is none."""
    try:
        with safe_open(os.path.join(out, "checkpoint", "trainable.safetensors"), framework="pt") as f:
            return int(f.metadata()["step"])
    except (OSError, SafetensorError, KeyError, TypeError, ValueError):
        return None


def load_checkpoint(out, params, opt, sched):
    """The checkpoint's step, after loading its weights, RNG and (unless opt is None) optimizer and schedule
    (recover_checkpoint first: train() does, before it reads the checkpoint's step)."""
    path = os.path.join(out, "checkpoint")
    if not os.path.isdir(path):
        raise RunError(f"{path}: no checkpoint to resume from; run without --resume (with --overwrite if {out} "
                       "holds an earlier run)")
    try:
        with torch.no_grad():
            for k, v in load_file(os.path.join(path, "trainable.safetensors")).items():
                params[k].copy_(v)
        # Rank 0 saved it from cuda:0: without map_location every rank would load it onto cuda:0. On the CPU,
        # load_state_dict moves each optimizer state to its parameter's device (this rank's), and the RNG state
        # must be a CPU tensor anyway.
        state = torch.load(os.path.join(path, "state.pt"), map_location="cpu", weights_only=False)
        if opt is not None:
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
    except (OSError, RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError, SafetensorError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RunError(f"{path}: unreadable ({why}); the checkpoint is damaged: start over with --overwrite") from None
    return state["step"]


def check_resume(cfg, resumable):
    """--resume continues the run recorded in out/train_config.json: refuse flags that change what it computes."""
    file = os.path.join(cfg.out, "train_config.json")
    if not os.path.isfile(file):
        return
    recorded, now = read_json(file, RunError, "the train_config.json train.py writes"), dataclasses.asdict(cfg)
    # a run from before these fields computed what their old behaviour computes: --init merged, contexts cut at the end
    recorded.setdefault("merge_stage1", bool(recorded.get("init")))
    recorded.setdefault("truncation", "paper" if recorded.get("data") in ("instructions", "qa") else cfg.truncation)
    changed = [f"--{k.replace('_', '-')} {recorded[k]!r} -> {v!r}" for k, v in now.items()
               if k not in resumable and k in recorded and recorded[k] != v]
    if changed:
        raise RunError(f"{file}: --resume with a changed configuration ({', '.join(changed)}); resume with the "
                       "recorded values, or start over with --overwrite or another --out")
    changed = base_changes(cfg.model, recorded.get("base_identity")) if cfg.stage else []
    if changed:
        raise RunError(f"{cfg.model}: {', '.join(changed)} changed since the run in {cfg.out} started on it ({file} "
                       "records their digests); restore that base to --resume, or start over with --overwrite")


def read_rows(metrics):
    """metrics.jsonl's whole rows (lines, each with its \n); a last line torn by an interruption is left out."""
    return [line.decode("utf-8") + "\n" for line in complete_lines(metrics)[0]]


# ---- the --out directory: claimed, locked, told how to go on ----

def claim_out(cfg, rebuild=False):
    """Refuse an --out that holds a finished run (unless --overwrite), an unfinished one (unless --resume or
    --overwrite) or a run that is writing there now; then lock it: returns the lock file to remove at the end.
    First of all, an --out that is a file, cannot be written or is not a run of ours (files.check_out_dir): a run
    directory holds the train.lock written here or the train_config.json written before the first step; before
    either, only stage 0's tokenizer.model. rebuild: the run may replace a finished one without --overwrite
    (stage 0 rebuilding the shipped tiny/base, which git keeps)."""
    check_out_dir("--out", cfg.out, ours=lambda n: n in ("tokenizer.model", "tokenizer.model.tmp"),
                  marker=("train.lock", "train_config.json"), writer="train.py")
    lock = os.path.join(cfg.out, "train.lock")
    try:
        with open(lock) as f:
            pid = int(f.read())
        os.kill(pid, 0)  # raises when no such process: the lock is stale (a killed run)
        if pid != os.getpid():
            raise RunError(f"{lock}: another run (pid {pid}) is writing to {cfg.out}; wait for it, or choose "
                           "another --out")
    except (OSError, ValueError):
        pass
    finished = [n for n in ("adapter_model.safetensors", "model.safetensors")
                if os.path.isfile(os.path.join(cfg.out, n))]
    if finished and not (cfg.resume or cfg.overwrite or rebuild):
        raise RunError(f"{cfg.out}: holds a finished run ({finished[0]}); pass --overwrite to replace it, "
                       "or choose another --out")
    if any(os.path.isdir(os.path.join(cfg.out, n)) for n in CHECKPOINT_DIRS) and not (cfg.resume or cfg.overwrite):
        raise RunError(f"{cfg.out}: holds an unfinished run (its checkpoint); pass --resume to continue it, or "
                       "--overwrite to start over")
    os.makedirs(cfg.out, exist_ok=True)
    with open(lock, "w") as f:
        f.write(str(os.getpid()))
    return lock


def go_on(cfg):
    """How a run that stopped short goes on: from its checkpoint (--resume), or from the start."""
    if cfg:
        recover_checkpoint(cfg.out)
    step = checkpoint_step(cfg.out) if cfg else None
    return (f"the checkpoint of step {step} is kept in {cfg.out}/checkpoint: rerun the same command with --resume"
            if step is not None else "no checkpoint was saved yet: rerun the command")


# ---- lineage: which base and which earlier adapters a trained directory stands on ----

def write_lineage(path, base, merged=(), merge=False, identity=None):
    """lineage.json beside an adapter: its base checkpoint and the earlier adapters it was trained on top of (in
    order; the key keeps its first name, "merged"), how they were stacked: "merge": false for frozen fp32
    branches (train.py's default), true for merged into the weights in their dtype (--merge-stage1), and the
    base's files as they were ("base_identity": files.base_identity, given or read now) and the earlier
    adapters' ("merged_digests": each one's adapter_model.safetensors). Paths are stored relative to `path`
    so a whole out/ tree can be moved."""
    rel = lambda p: os.path.relpath(os.path.abspath(p), os.path.abspath(path))
    lin = {"base": rel(base), "merged": [rel(m) for m in merged], "merge": bool(merge),
           "base_identity": identity or base_identity(base),
           "merged_digests": [file_digest(os.path.join(m, "adapter_model.safetensors")) for m in merged]}
    write_text(os.path.join(path, "lineage.json"), json.dumps(lin, indent=2))


def read_lineage(path):
    """{"base", "merged", "merge", "adapter", "base_identity"} with absolute paths; a directory without
    lineage.json is a plain base. A lineage.json without "merge" predates the frozen branch: its earlier
    adapters were merged; one without "base_identity" predates that record: its base is known by path only."""
    file = os.path.join(path, "lineage.json")
    if not os.path.isfile(file):
        return {"base": path, "merged": [], "merge": False, "adapter": False, "base_identity": None,
                "merged_digests": None}
    lin = read_json(file, RunError, '{"base": DIR, "merged": [DIR, ...]} as train.py writes it')
    if not (isinstance(lin, dict) and isinstance(lin.get("base"), str) and isinstance(lin.get("merged"), list)
            and all(isinstance(m, str) for m in lin["merged"]) and isinstance(lin.get("merge", True), bool)
            and isinstance(lin.get("base_identity", {}), dict)
            and isinstance(lin.get("merged_digests", lin["merged"]), list)):
        raise RunError(f'{file}: expected {{"base": DIR, "merged": [DIR, ...], "merge": true|false, '
                       '"base_identity": {FILE: DIGEST}}; rerun the training that wrote it')
    resolve = lambda p: os.path.normpath(os.path.join(path, p))
    return {"base": resolve(lin["base"]), "merged": [resolve(m) for m in lin["merged"]],
            "merge": lin.get("merge", True), "adapter": True, "base_identity": lin.get("base_identity"),
            "merged_digests": lin.get("merged_digests")}


def check_base(path, lin):
    """Refuse the trained directory `path` (its read_lineage `lin`) when its base's files, or an earlier adapter
    it was trained on top of (stage 1 under stage 2), are no longer those it was trained on (a base rebuilt or
    re-downloaded, a stage 1 retrained, under the same path): another model than asked."""
    changed = base_changes(lin["base"], lin["base_identity"])
    if changed:
        raise RunError(f"{lin['base']}: {', '.join(changed)} changed since {path} was trained on it "
                           f"({os.path.join(path, 'lineage.json')} records their digests); restore the base it was "
                           f"trained on, or retrain {path} on this one (--overwrite)")
    for m, digest in zip(lin["merged"], lin["merged_digests"] or []):  # none recorded: a run from before the record
        file = os.path.join(m, "adapter_model.safetensors")
        if os.path.isfile(file) and file_digest(file) != digest:
            record = os.path.join(path, "lineage.json")
            raise RunError(f"{file}: changed since {path} was trained on top of it ({record} records its "
                               f"digest); restore that adapter, or retrain {path} on this one (--overwrite)")
    return lin


def require_base(path, base, flag):
    """The lineage of the trained directory `path`, after checking that it stands on `base` (the user's --model)
    as it is now: a recorded base that silently beat the user's choice, or a base changed since, would train or
    evaluate another model than asked."""
    lin = read_lineage(path)
    if not lin["adapter"]:
        raise RunError(f"{path}: no lineage.json, so not a directory train.py wrote; point {flag} at a "
                           "trained run (e.g. out/stage1)")
    if os.path.realpath(lin["base"]) != os.path.realpath(base):
        raise RunError(f"{os.path.join(path, 'lineage.json')}: {path} was trained on {lin['base']}, not on "
                           f"--model {base}; pass --model {lin['base']}")
    return check_base(path, lin)
