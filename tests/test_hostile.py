"""A hostile but realistic user: every failure is one line naming the file or flag and the fix, no run trains or
evaluates something other than what was asked, and no finished result is overwritten by accident (issue 15)."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import cli
import eval as ev
import files
import lora
import runs
import model
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_TMP = []  # the running test's tmp_path (eval's default --out-root goes under it)


@pytest.fixture(autouse=True)
def _tmp_of_this_test(tmp_path):
    _TMP.append(tmp_path)
    yield
    _TMP.pop()


def error_of(main, argv):
    """The message main() exits with: one line starting `error:` (sys.exit(str): exit status 1, no traceback)."""
    if main is ev.main and "--out-root" not in argv:  # never touch the checkout's own out/eval, nor the system tmp
        out = _TMP[-1] / "eval_out"
        n = 0
        while out.exists():
            n += 1
            out = _TMP[-1] / f"eval_out{n}"
        argv = [*argv, "--out-root", str(out)]
    with pytest.raises(SystemExit) as e:
        main(argv)
    msg = e.value.code
    assert isinstance(msg, str) and msg.startswith("error: ") and "\n" not in msg, msg
    return msg


def stage1(w, out, *extra):
    return ["--stage", "1", "--model", w["base"], "--asqa", w["asqa"], "--out", out, "--lr", "1e-2",
            "--micro-batch", "2", "--grad-accum", "2", "--max-records", "24", "--val-share", "0", "--save-every", "1",
            *extra]


def steps(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [r["step"] for r in map(json.loads, f) if "loss" in r]


def adapter(out):
    return load_file(os.path.join(out, "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def run1(micro_world, tmp_path_factory):
    """A finished stage-1 run (3 steps) on the micro base."""
    out = str(tmp_path_factory.mktemp("run1") / "stage1")
    train.main(stage1(micro_world, out, "--max-steps", "3"))
    return out


def copy(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


def edit_json(path, change):
    with open(path) as f:
        obj = json.load(f)
    change(obj)
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


# ---- class 3: flags ----

@pytest.mark.parametrize("argv, message", [
    (["--micro-batch", "0"], "--micro-batch must be >= 1, not 0"),
    (["--grad-accum", "0"], "--grad-accum must be >= 1, not 0"),
    (["--lora-r", "0"], "--lora-r must be >= 1, not 0"),
    (["--lr", "nan"], "--lr must be > 0, not nan"),
    (["--lr=-1e-4"], "--lr must be > 0, not -0.0001"),
    (["--val-share", "1"], "--val-share must be in [0, 1), not 1.0"),
    (["--stage", "3"], "argument --stage: invalid choice: 3 (choose from 0, 1, 2)"),
    (["--data", "foo"], "argument --data: invalid choice: 'foo'"),
    (["--preset", "fast"], "argument --preset: invalid choice: 'fast'"),
    (["--filter", "strct"], "argument --filter: invalid choice: 'strct'"),
    (["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
    (["--epochs", "0", "--max-steps", "0"], "--epochs 0 and --max-steps 0 leave nothing to train"),
    (["--stage", "0", "--data", "qa"], "--stage 0 cannot train on --data qa"),
    (["--device", "gpu"], "--device must be auto, cpu or cuda[:N]"),
])
def test_train_refuses_bad_flags_in_one_line_naming_the_flag(argv, message):
    assert message in error_of(train.main, argv)


@pytest.mark.parametrize("argv, message", [
    (["--batch-tokens=-1"], "--batch-tokens must be >= 0, not -1"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1, not 0"),
    (["--split", "dev"], "argument --split: invalid choice: 'dev'"),
    (["--task-prefix", "yes"], "argument --task-prefix: invalid choice: 'yes'"),
])
def test_eval_refuses_bad_flags_in_one_line_naming_the_flag(argv, message):
    assert message in error_of(ev.main, argv)


@pytest.mark.parametrize("script", ["train.py", "eval.py"])
def test_help_explains_every_flag_with_its_default(script):
    out = subprocess.run([sys.executable, os.path.join(ROOT, script), "--help"], capture_output=True, text=True,
                         check=True).stdout
    cls = train.TrainConfig if script == "train.py" else ev.EvalConfig
    ap = cli.config_parser(cls, "")
    for action in ap._actions[1:]:
        assert action.help and "default" in action.help and len(action.help) > 20, action.option_strings
        assert action.option_strings[0] in out
    if script == "train.py":  # the real default: the preset's, per preset and stage
        assert ("(default by --preset: paper 4e-05, stage 2 5e-05; tiny stage 0 0.002, stage 1 0.003, stage 2 0.01;"
                in " ".join(out.split()))


# ---- class 1: files that do not parse ----

def test_unparsable_model_files_name_the_file(micro_world, tmp_path):
    w = micro_world
    cases = {"config.json": b"{not json", "model.safetensors": b"", "tokenizer.model": b"garbage"}
    for name, content in cases.items():
        base = copy(w["base"], tmp_path / name)
        with open(os.path.join(base, name), "wb") as f:
            f.write(content)
        msg = error_of(ev.main, ["--model", base, "--asqa", w["asqa"], "--instruction-items", "0"])
        assert os.path.join(base, name) in msg, msg
    base = copy(w["base"], tmp_path / "truncated")
    path = os.path.join(base, "model.safetensors")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])
    assert f"{path}: unreadable" in error_of(ev.main, ["--model", base, "--asqa", w["asqa"]])
    os.remove(path)
    open(os.path.join(base, "model.safetensors.index.json"), "w").write('{"weight_map": ')
    assert "model.safetensors.index.json: not valid JSON" in error_of(ev.main, ["--model", base, "--asqa", w["asqa"]])


def test_unparsable_adapter_files_name_the_file(micro_world, run1, tmp_path):
    w = micro_world
    for name, content in (("adapter_config.json", b"{"), ("adapter_model.safetensors", b"\x00" * 7),
                          ("lineage.json", b"[1, 2")):
        run = copy(run1, tmp_path / name.replace(".", "_"))
        open(os.path.join(run, name), "wb").write(content)
        msg = error_of(ev.main, ["--model", w["base"], "--adapter", run, "--asqa", w["asqa"]])
        assert os.path.join(run, name) in msg, msg


def test_unparsable_data_files_name_the_file_and_line(micro_world, tmp_path):
    w = micro_world
    bad = tmp_path / "latin1.json"
    bad.write_bytes(open(w["asqa"], "rb").read().replace(b'"question": "', b'"question": "\xe9', 1))
    assert f"{bad}: not UTF-8 text" in error_of(ev.main, ["--model", w["base"], "--asqa", str(bad)])
    targets = tmp_path / "targets.jsonl"
    targets.write_text('{"_id": "a", "output": "x"}\n{"_id": "b", "output": \n')
    msg = error_of(train.main, ["--stage", "2", "--model", w["base"], "--hotpot", w["hotpot"], "--stage2-targets",
                                str(targets), "--out", str(tmp_path / "o"), "--preset", "micro"])
    assert f"{targets}: line 2 is not valid JSON" in msg
    msg = error_of(train.main, ["--stage", "2", "--model", w["base"], "--hotpot", w["hotpot"], "--stage2-targets",
                                str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o"), "--preset", "micro"])
    assert "nope.jsonl: missing" in msg


def stage0(w, tmp_path, corpus=None, words=None, *extra):
    data_dir = os.path.join(w["root"], "data")
    return ["--stage", "0", "--preset", "micro", "--base-corpus", corpus or os.path.join(data_dir, "base_corpus.jsonl"),
            "--whole-words", words or os.path.join(data_dir, "world_words.txt"), "--out", str(tmp_path / "base0"),
            *extra]


QA = {"question": "When was Zorvan founded?", "answer": "Zorvan was founded in 1516.", "template": "qa",
      "passages": [["Zorvan", "Zorvan was founded in 1516."]]}


@pytest.mark.parametrize("line, message", [
    ('{"question": "When', "line 2 is not valid JSON"),
    ("[1, 2]", "line 2 is [1, 2], not a JSON object"),
    ('"Zorvan"', 'line 2 is "Zorvan", not a JSON object'),
    (json.dumps({k: v for k, v in QA.items() if k != "answer"}), "line 2 has no field 'answer'"),
    (json.dumps({**QA, "answer": None}), "field 'answer' of line 2 is null, not a string"),
    (json.dumps({**QA, "question": ["When?"]}), "field 'question' of line 2 is [\"When?\"], not a string"),
    (json.dumps({**QA, "passages": "Zorvan was founded in 1516."}), "field 'passages' of line 2 is \"Zorvan was"),
    (json.dumps({**QA, "passages": [["Zorvan", 1516]]}), "not a non-empty list of [title or null, text]"),
    (json.dumps({**QA, "passages": []}), "field 'passages' of line 2 is [], not a non-empty list"),
    (json.dumps({**QA, "template": "chat"}), "field 'template' of line 2 is \"chat\", not eval or qa"),
    (json.dumps({k: v for k, v in QA.items() if k != "template"}), "line 2 has no field 'template'"),
    (json.dumps({**QA, "slot": 5}), "field 'slot' of line 2 is 5, not an int from 0 to 4"),
    (json.dumps({**QA, "template": "eval", "prefix": "yes"}), "field 'prefix' of line 2 is \"yes\", not true or false"),
    (json.dumps({"instruction": "Copy: abc"}), "line 2 has no field 'output'"),
    (json.dumps({"instruction": "Copy: abc", "output": 3}), "field 'output' of line 2 is 3, not a string"),
    (json.dumps({**QA, "phase": 5}), "field 'phase' of line 2 is 5, not 1 or 2"),
    (json.dumps({**QA, "phase": True}), "field 'phase' of line 2 is true, not 1 or 2"),
    (json.dumps({**QA, "phase": 0}), "field 'phase' of line 2 is 0, not 1 or 2"),
    (json.dumps({"instruction": "Copy: abc", "output": "abc", "phase": "2"}),
     "field 'phase' of line 2 is \"2\", not 1 or 2"),
])
def test_malformed_base_corpus_lines_name_the_file_and_line(micro_world, tmp_path, line, message):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps(QA) + "\n" + line + "\n")
    msg = error_of(train.main, stage0(micro_world, tmp_path, str(corpus)))
    assert msg.startswith(f"error: {corpus}: ") and message in msg, msg
    assert not os.path.exists(tmp_path / "base0" / "model.safetensors")


@pytest.mark.parametrize("flag, phase, writer", [("--polish-steps", 2, "")])
def test_a_phase_without_its_records_is_one_line(micro_world, tmp_path, flag, phase, writer):
    """--polish-steps over a corpus without "phase": 2 lines (written before the second phase): one line, the fix."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps(QA) + "\n")
    msg = error_of(train.main, stage0(micro_world, tmp_path, str(corpus)) + [flag, "2"])
    assert msg == (f'error: {corpus}: {flag} 2 needs records with "phase": {phase}; none there (python tinyworld.py '
                   f"{writer}writes them), or pass {flag} 0")


def test_a_polish_phase_whose_records_are_all_over_the_cutoff_is_one_line(micro_world, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    long = {"instruction": "Repeat the text below.\n\n" + "rock jazz " * 200, "output": "rock jazz", "phase": 2}
    corpus.write_text(json.dumps(QA) + "\n" + json.dumps(long) + "\n")
    msg = error_of(train.main, stage0(micro_world, tmp_path, str(corpus)) + ["--polish-steps", "2", "--cutoff-len",
                                                                             "256"])
    assert msg == f"error: every polish-phase record of {corpus} is longer than --cutoff-len 256"


@pytest.mark.parametrize("content, message", [
    (None, "missing; stage 0 reads the tiny world's base_corpus.jsonl"),
    (b"", "holds no records"),
    (b"\n \n", "holds no records"),
    (json.dumps(QA).replace("Zorvan", "Zorv\xe9n").encode("latin-1"), "not UTF-8 text"),
])
def test_unreadable_base_corpus_names_the_file(micro_world, tmp_path, content, message):
    corpus = tmp_path / "corpus.jsonl"
    if content is not None:
        corpus.write_bytes(content)
    msg = error_of(train.main, stage0(micro_world, tmp_path, str(corpus)))
    assert msg.startswith(f"error: {corpus}: ") and message in msg, msg


@pytest.mark.parametrize("content, message", [
    (None, "missing; a file of one word per line"),
    (b"", "holds no words"),
    (b"Zorvan\n\nKelbrin\n", "line 2 is blank"),
    (b"Zorvan\n \n", "line 2 is blank"),
    (b"Zorvan\nNew York\n", "line 2, 'New York', holds whitespace"),
    (b"Zorvan\nKelbrin\tLunmoor\n", "line 2, 'Kelbrin\\tLunmoor', holds whitespace"),
    (b"Zorvan\nKelbrin\nZorvan\n", "line 3 repeats 'Zorvan' of line 1"),
    (b"Zorv\xe9n\n", "not UTF-8 text"),
])
def test_malformed_whole_words_name_the_file_and_line(micro_world, tmp_path, content, message):
    words = tmp_path / "words.txt"
    if content is not None:
        words.write_bytes(content)
    msg = error_of(train.main, stage0(micro_world, tmp_path, None, str(words)))
    assert msg.startswith(f"error: {words}: ") and message in msg, msg


def test_more_whole_words_than_the_vocabulary_holds_names_the_flag(micro_world, tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("".join(f"Word{i}\n" for i in range(2000)))  # the micro preset's --vocab-size is 1500
    msg = error_of(train.main, stage0(micro_world, tmp_path, None, str(words)))
    assert msg.startswith("error: --vocab-size 1500: sentencepiece cannot build this tokenizer") and "--whole-words" in msg


def test_truncated_checkpoint_on_resume_names_the_checkpoint(micro_world, tmp_path):
    out = str(tmp_path / "cut")
    train.main(stage1(micro_world, out, "--max-steps", "4", "--stop-after", "2"))
    with open(os.path.join(out, "checkpoint", "state.pt"), "r+b") as f:
        f.truncate(100)
    msg = error_of(train.main, stage1(micro_world, out, "--max-steps", "4", "--resume"))
    assert f"{out}/checkpoint: unreadable" in msg and "--overwrite" in msg


# ---- class 2: field types ----

def asqa_with(w, tmp_path, change):
    return edit_json(shutil.copy(w["asqa"], str(tmp_path / "asqa.json")), change)


def first_pair(asqa):
    return next(iter(asqa["train"].values()))["qa_pairs"][0]


@pytest.mark.parametrize("change, message", [
    (lambda a: first_pair(a).update(short_answers="folk"), "field 'short_answers' of a qa_pair of train["),
    (lambda a: first_pair(a).update(short_answers=None), "is null, not a list of strings"),
    (lambda a: first_pair(a).update(short_answers=[None]), "is [null], not a list of strings"),
    (lambda a: first_pair(a).update(context=None), "field 'context' of a qa_pair"),
    (lambda a: first_pair(a).update(wikipage=7), "field 'wikipage' of a qa_pair"),
    (lambda a: a.update(train=[]), "field 'train' of the top-level object is [], not an object"),
])
def test_asqa_fields_of_the_wrong_type_are_refused(micro_world, tmp_path, change, message):
    path = asqa_with(micro_world, tmp_path, change)
    msg = error_of(ev.main, ["--model", micro_world["base"], "--asqa", path])
    assert msg.startswith(f"error: {path}: ") and message in msg, msg


def test_a_string_of_short_answers_is_never_scored_letter_by_letter(micro_world, tmp_path):
    """The worst case of the issue: "folk" used to exit 0, scored against the answers f, o, l, k."""
    path = asqa_with(micro_world, tmp_path, lambda a: first_pair(a).update(short_answers="folk"))
    with pytest.raises(SystemExit, match="not a list of strings"):
        ev.main(["--model", micro_world["base"], "--asqa", path, "--out-root", str(tmp_path / "out")])
    assert not os.path.exists(tmp_path / "out" / "eval" / "results.json")


def test_hotpot_answer_null_is_refused(micro_world, tmp_path):
    path = edit_json(shutil.copy(micro_world["hotpot"], str(tmp_path / "hotpot.json")), lambda h: h[3].update(answer=None))
    msg = error_of(train.main, ["--stage", "2", "--data", "qa", "--model", micro_world["base"], "--hotpot", path,
                                "--out", str(tmp_path / "o"), "--preset", "micro"])
    assert f"{path}: field 'answer' of item 3 is null, not a string" in msg


@pytest.mark.parametrize("field, value, message", [
    ("hidden_size", "32", "hidden_size is '32', not a positive int"),
    ("num_key_value_heads", 3, "num_attention_heads 2 is not a multiple of num_key_value_heads 3"),
    ("rms_norm_eps", None, None),  # null means "the default": still loads
    ("vocab_size", 0, "vocab_size is 0, not a positive int"),
])
def test_config_fields_of_the_wrong_type_are_refused(micro_world, tmp_path, field, value, message):
    base = copy(micro_world["base"], tmp_path / "base")
    edit_json(os.path.join(base, "config.json"), lambda c: c.update({field: value}))
    if message is None:
        assert model.Llama.from_pretrained(base).args.rms_norm_eps == 1e-5
        return
    msg = error_of(ev.main, ["--model", base, "--asqa", micro_world["asqa"]])
    assert f"{base}/config.json: {message}" in msg


@pytest.mark.parametrize("field, value", [("lora_alpha", "16"), ("r", 0), ("target_modules", ["q_proj", 3])])
def test_adapter_config_fields_of_the_wrong_type_are_refused(micro_world, run1, tmp_path, field, value):
    run = copy(run1, tmp_path / "run")
    edit_json(os.path.join(run, "adapter_config.json"), lambda c: c.update({field: value}))
    msg = error_of(ev.main, ["--model", micro_world["base"], "--adapter", run, "--asqa", micro_world["asqa"]])
    assert f"{run}/adapter_config.json: {field} is {value!r}" in msg


# ---- class 7: interruptions ----

def interrupt_at_call(monkeypatch, n, exc=KeyboardInterrupt):
    calls, real = {"n": 0}, train.run_micro_batch

    def run(*a):
        calls["n"] += 1
        if calls["n"] >= n:
            raise exc()
        return real(*a)
    monkeypatch.setattr(train, "run_micro_batch", run)


def test_ctrl_c_is_one_line_and_keeps_the_checkpoint_for_resume(micro_world, tmp_path, monkeypatch):
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    train.main(stage1(micro_world, full, "--max-steps", "4"))
    interrupt_at_call(monkeypatch, 5)  # two micro-batches per step: step 3 is interrupted
    msg = error_of(train.main, stage1(micro_world, cut, "--max-steps", "4"))
    assert msg == f"error: interrupted; the checkpoint of step 2 is kept in {cut}/checkpoint: rerun the same command with --resume"
    assert not os.path.exists(os.path.join(cut, "train.lock"))
    monkeypatch.undo()
    train.main(stage1(micro_world, cut, "--max-steps", "4", "--resume"))
    a, b = adapter(full), adapter(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_before_any_checkpoint_says_so(micro_world, tmp_path, monkeypatch):
    interrupt_at_call(monkeypatch, 1)
    msg = error_of(train.main, stage1(micro_world, str(tmp_path / "o"), "--max-steps", "4"))
    assert msg == "error: interrupted; no checkpoint was saved yet: rerun the command"


@pytest.mark.parametrize("left", ["old and tmp", "old only"])
def test_resume_finishes_a_checkpoint_rename_that_a_crash_interrupted(micro_world, tmp_path, left):
    """save_checkpoint: write checkpoint.tmp, checkpoint -> checkpoint.old, checkpoint.tmp -> checkpoint. A crash
    between the renames leaves .old (step 2) and a complete .tmp (step 3): resume continues from step 3."""
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    ckpt, tmp, old = (os.path.join(cut, n) for n in ("checkpoint", "checkpoint.tmp", "checkpoint.old"))
    train.main(stage1(micro_world, full, "--max-steps", "5"))
    train.main(stage1(micro_world, cut, "--max-steps", "5", "--stop-after", "2"))
    if left == "old and tmp":
        shutil.copytree(ckpt, str(tmp_path / "step2"))
        train.main(stage1(micro_world, cut, "--max-steps", "5", "--stop-after", "3", "--resume"))
        os.rename(ckpt, tmp)  # step 3
        os.rename(str(tmp_path / "step2"), old)
    else:
        os.rename(ckpt, old)
    train.main(stage1(micro_world, cut, "--max-steps", "5", "--resume"))
    assert steps(cut) == [1, 2, 3, 4, 5]  # no step done twice: the newest checkpoint was found
    a, b = adapter(full), adapter(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_at_step_1_does_not_claim_a_checkpoint(micro_world, tmp_path, monkeypatch):
    real = train.run_micro_batch
    monkeypatch.setattr(train, "run_micro_batch", lambda *a: real(*a) * float("nan"))
    msg = error_of(train.main, stage1(micro_world, str(tmp_path / "o"), "--max-steps", "3"))
    assert "loss is nan at step 1" in msg and "no checkpoint was saved before it" in msg and "kept" not in msg


def test_disk_full_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(micro_world, tmp_path, monkeypatch):
    out = str(tmp_path / "o")
    calls, real = {"n": 0}, runs.save_file

    def full(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(*a, **k)
    monkeypatch.setattr(runs, "save_file", full)
    msg = error_of(train.main, stage1(micro_world, out, "--max-steps", "4"))
    assert "checkpoint.tmp: could not write the checkpoint of step 3 ([Errno 28] No space left on device)" in msg
    assert runs.checkpoint_step(out) == 2 and not os.path.exists(os.path.join(out, "checkpoint.tmp"))


def disk_full(monkeypatch, name, at=1):
    """The `at`-th opening for writing of a file whose name starts with `name` (its .tmp too) fills the disk: half
    of what is written reaches the file, then ENOSPC."""
    real, calls = open, {"n": 0}

    def fake_open(file, mode="r", *a, **k):
        f = real(file, mode, *a, **k)
        if ("w" in mode or "a" in mode) and os.path.basename(str(file)).startswith(name):
            calls["n"] += 1
            if calls["n"] == at:
                write = f.write

                def full(text):
                    write(text[:len(text) // 2])
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                f.write = full
        return f
    monkeypatch.setattr("builtins.open", fake_open)


def safetensors_disk_full(monkeypatch, module):
    """module.save_file writes half a file, then ENOSPC."""
    real = module.save_file

    def full(tensors, file, *a, **k):
        real(tensors, file, *a, **k)
        os.truncate(file, os.path.getsize(file) // 2)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(module, "save_file", full)


FULL = "could not write it ([Errno 28] No space left on device); free disk space; "


@pytest.mark.parametrize("name, at, kept", [
    ("adapter_model.safetensors", 1, 3), ("adapter_config.json", 1, 3), ("lineage.json", 1, 3),
    ("metrics.jsonl", 3, 1),  # the append of step 2 (the 1st opening empties it, the 2nd appends step 1)
    ("train_config.json", 1, None),  # at the start: nothing saved yet
])
def test_disk_full_while_saving_a_run_is_one_line_and_leaves_no_torn_file(micro_world, run1, tmp_path, monkeypatch,
                                                                         name, at, kept):
    out = str(tmp_path / "o")
    if name == "adapter_model.safetensors":
        safetensors_disk_full(monkeypatch, lora)
    else:
        disk_full(monkeypatch, name, at)
    msg = error_of(train.main, stage1(micro_world, out, "--max-steps", "3"))
    assert msg == f"error: {out}/{name}: {FULL}" + (
        f"the checkpoint of step {kept} is kept in {out}/checkpoint: rerun the same command with --resume" if kept
        else "no checkpoint was saved yet: rerun the command")
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]  # no torn file, under any name
    assert not os.path.exists(os.path.join(out, "adapter_model.safetensors"))  # the run does not look finished
    monkeypatch.undo()
    train.main(stage1(micro_world, out, "--max-steps", "3", *["--resume"] * bool(kept)))
    assert steps(out) == [1, 2, 3]  # the failed append left no torn line nor an extra row
    a, b = adapter(run1), adapter(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_disk_full_while_saving_the_base_of_stage_0_is_one_line(micro_world, tmp_path, monkeypatch):
    safetensors_disk_full(monkeypatch, model)
    out = tmp_path / "base0"
    msg = error_of(train.main, stage0(micro_world, tmp_path, None, None, "--max-steps", "2"))
    assert msg == (f"error: {out}/model.safetensors: {FULL}the checkpoint of step 2 is kept in {out}/checkpoint: "
                   "rerun the same command with --resume")
    assert not os.path.exists(out / "model.safetensors") and not os.path.exists(out / "model.safetensors.tmp")
    monkeypatch.undo()
    train.main(stage0(micro_world, tmp_path, None, None, "--max-steps", "2", "--resume"))
    assert model.Llama.from_pretrained(str(out)).args.hidden_size == 32


def eval_argv(w, out_root, *extra):
    return ["--model", w["base"], "--asqa", w["asqa"], "--max-rows", "2", "--instruction-items", "0",
            "--max-new-tokens", "4", "--instruction-max-new-tokens", "4", "--batch-tokens", "1", "--out-root", str(out_root), *extra]  # 8 batches of 1


@pytest.mark.parametrize("name, at", [("base.jsonl", 3), ("results.json", 1), ("results.md", 1)])
def test_disk_full_while_evaluating_is_one_line_and_a_rerun_finishes(micro_world, tmp_path, monkeypatch, name, at):
    argv, jsonl = eval_argv(micro_world, tmp_path), str(tmp_path / "eval" / "base.jsonl")
    disk_full(monkeypatch, name, at)
    msg = error_of(ev.main, argv)
    kept = 2 if name == "base.jsonl" else 8  # the third batch's append failed; else every prompt was answered
    assert msg == (f"error: {tmp_path}/eval/{name}: {FULL}{kept} of the 8 prompts of base answered are kept in "
                   f"{jsonl}: rerun the same command to continue")
    assert not [f for f in os.listdir(tmp_path / "eval") if f.endswith(".tmp")]
    assert not os.path.exists(tmp_path / "eval" / "results.json") or name == "results.md"
    assert len([json.loads(line) for line in open(jsonl)]) == kept  # whole lines only
    monkeypatch.undo()
    results = ev.main(argv)
    assert results["base"]["n_rows"] == 2 and len(open(jsonl).readlines()) == 8
    assert json.load(open(tmp_path / "eval" / "results.json"))["results"] == json.loads(json.dumps(results))


def test_ctrl_c_in_eval_is_one_line_saying_what_is_kept(micro_world, tmp_path, monkeypatch):
    calls, real = {"n": 0}, ev.generate

    def gen(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(ev, "generate", gen)
    jsonl = str(tmp_path / "eval" / "base.jsonl")
    msg = error_of(ev.main, eval_argv(micro_world, tmp_path))
    assert msg == f"error: interrupted; 3 of the 8 prompts of base answered are kept in {jsonl}: rerun the same command to continue"
    monkeypatch.undo()
    assert ev.main(eval_argv(micro_world, tmp_path))["base"]["n_rows"] == 2


SLOW_EVAL = """import sys, time
sys.path.insert(0, {root!r})
import eval as ev
real = ev.generate
def slow(*a, **k):
    time.sleep(0.5)  # a batch that takes a while: the signal comes mid-run
    return real(*a, **k)
ev.generate = slow
ev.main(sys.argv[1:])
"""


def test_sigterm_in_eval_is_one_line_and_a_rerun_continues(micro_world, tmp_path):
    argv, jsonl = eval_argv(micro_world, tmp_path), tmp_path / "eval" / "base.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_EVAL.format(root=ROOT), *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.time() + 120
        while not (jsonl.exists() and jsonl.read_bytes().count(b"\n")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=120)[1].decode()
    finally:
        proc.kill()
    assert proc.returncode == 1 and "Traceback" not in err, err
    msg = err[err.index("error: "):]
    assert msg.endswith("\n") and "\n" not in msg[:-1], err  # one line, the last
    assert msg.startswith("error: interrupted; ") and msg.endswith(
        f" of the 8 prompts of base answered are kept in {jsonl}: rerun the same command to continue\n"), msg
    kept = int(msg.split("; ")[1].split()[0])
    assert 1 <= kept < 8 and len(jsonl.read_text().splitlines()) == kept
    assert ev.main(argv)["base"]["n_rows"] == 2 and len(jsonl.read_text().splitlines()) == 8


# ---- class 8: eval survives a prompt longer than the model's positions ----

def test_eval_cuts_and_counts_prompts_too_long_for_the_model(micro_world, tmp_path):
    w = micro_world
    base = copy(w["base"], tmp_path / "base")
    tok = ev.data.Tokenizer(base)
    rows = [r for r in ev.data.build_benchmark(w["asqa"]) if r["split"] == "test"][:4]
    lengths = sorted(len(p[3]) for p in ev.model_prompts(tok, rows, [], False))
    room = lengths[len(lengths) // 2]
    edit_json(os.path.join(base, "config.json"), lambda c: c.update(max_position_embeddings=room + 8))
    results = ev.main(["--model", base, "--asqa", w["asqa"], "--max-rows", "4", "--instruction-items", "0",
                       "--max-new-tokens", "8", "--instruction-max-new-tokens", "8", "--out-root", str(tmp_path / "out")])
    recs = [json.loads(line) for line in open(tmp_path / "out" / "eval" / "base.jsonl")]
    cut = [r for r in recs if "cut_from" in r]
    assert 0 < len(cut) < len(recs) and results["base"]["cut_prompts"] == len(cut)
    assert all(r["cut_from"] > room >= r["cut_to"] for r in cut)
    assert all("output" in r for r in recs) and results["base"]["n_rows"] == 4  # every prompt answered, none skipped


# ---- class 5: resume refuses a changed configuration ----

def test_resume_refuses_changed_settings_but_not_harmless_ones(micro_world, tmp_path):
    out = str(tmp_path / "cut")
    train.main(stage1(micro_world, out, "--max-steps", "4", "--stop-after", "1"))
    msg = error_of(train.main, stage1(micro_world, out, "--max-steps", "4", "--resume", "--lr", "1e-5", "--lora-r", "4"))
    assert msg.startswith(f"error: {out}/train_config.json: --resume with a changed configuration")
    assert "--lr 0.01 -> 1e-05" in msg and "--lora-r 8 -> 4" in msg
    train.main(stage1(micro_world, out, "--max-steps", "4", "--resume", "--stop-after", "3", "--save-every", "2"))
    assert steps(out) == [1, 2, 3]


def test_resume_of_a_run_recorded_before_the_stage1_branch_keeps_its_merge(micro_world, run1, tmp_path):
    """A train_config.json without merge_stage1 was written when --init always merged: resuming it on frozen
    branches would continue on another model, so the old behaviour must be asked for."""
    w, out = micro_world, str(tmp_path / "old")
    args = ["--stage", "2", "--init", run1, "--model", w["base"], "--hotpot", w["hotpot"], "--out", out,
            "--preset", "micro", "--max-steps", "4"]
    train.main(args + ["--stop-after", "1", "--save-every", "1", "--merge-stage1", "--truncation", "paper"])
    file = os.path.join(out, "train_config.json")
    recorded = json.load(open(file))
    del recorded["merge_stage1"], recorded["truncation"]
    open(file, "w").write(json.dumps(recorded))
    msg = error_of(train.main, args + ["--resume"])
    assert "--merge-stage1 True -> False" in msg and "--truncation 'paper' -> 'evidence'" in msg
    train.main(args + ["--resume", "--merge-stage1", "--truncation", "paper"])


# ---- class 4: a recorded lineage never silently beats the user's arguments ----

def test_init_and_adapter_trained_on_another_base_are_refused(micro_world, run1, tmp_path):
    w = micro_world
    other = copy(w["base"], tmp_path / "other_base")
    msg = error_of(train.main, ["--stage", "2", "--init", run1, "--model", other, "--hotpot", w["hotpot"],
                                "--out", str(tmp_path / "s2"), "--preset", "micro"])
    assert f"{run1}/lineage.json: {run1} was trained on {os.path.normpath(w['base'])}, not on --model {other}" in msg
    msg = error_of(ev.main, ["--model", other, "--adapter", run1, "--asqa", w["asqa"]])
    assert "lineage.json" in msg and f"pass --model {os.path.normpath(w['base'])}" in msg


def rebuild(base, change):
    """The base's weights rewritten under the same path, as `python train.py --stage 0` does."""
    file = os.path.join(base, "model.safetensors")
    tensors = load_file(file)
    change(tensors)
    model.save_file(tensors, file, metadata={"format": "pt"})


def test_a_base_changed_since_training_is_refused_everywhere_it_is_used(micro_world, tmp_path):
    w = micro_world
    base, run = copy(w["base"], tmp_path / "base"), str(tmp_path / "out" / "stage1")
    train.main(["--stage", "1", "--model", base, "--asqa", w["asqa"], "--out", run, "--max-steps", "1",
                "--micro-batch", "2", "--grad-accum", "1", "--max-records", "8", "--val-share", "0"])
    recorded = json.load(open(os.path.join(run, "lineage.json")))["base_identity"]
    assert set(recorded) == {"config.json", "model.safetensors", "tokenizer.model"}
    rebuild(base, lambda t: None)  # the same bytes written again (a new mtime): the same base
    assert runs.require_base(run, base, "--adapter")["base"] == base
    rebuild(base, lambda t: t["model.norm.weight"].add_(1.0))
    refusal = (f"error: {base}: model.safetensors changed since {run} was trained on it ({run}/lineage.json records "
               f"their digests); restore the base it was trained on, or retrain {run} on this one (--overwrite)")
    assert error_of(train.main, ["--stage", "2", "--init", run, "--model", base, "--hotpot", w["hotpot"],
                                 "--out", str(tmp_path / "s2"), "--preset", "micro"]) == refusal
    assert error_of(ev.main, ["--model", base, "--adapter", run, "--asqa", w["asqa"]]) == refusal
    evals = tmp_path / "out" / "eval"
    assert error_of(ev.main, ["--out-root", str(tmp_path / "out"), "--asqa", w["asqa"], "--hotpot", w["hotpot"]]) == refusal
    assert not evals.exists() or not os.listdir(evals)  # refused before any model ran, the base row included
    edit_json(os.path.join(base, "config.json"), lambda c: c.update(rms_norm_eps=2e-5))
    assert f"{base}: config.json, model.safetensors changed since" in error_of(
        ev.main, ["--model", base, "--adapter", run, "--asqa", w["asqa"]])
    edit_json(os.path.join(run, "lineage.json"), lambda lin: lin.pop("base_identity"))  # written before the record
    results = ev.main(["--model", base, "--adapter", run, "--asqa", w["asqa"], "--max-rows", "1", "--max-new-tokens",
                       "2", "--instruction-items", "0", "--out-root", str(tmp_path / "out2")])
    assert results["stage1"]["n_rows"] == 1  # known by path only, as before: it loads


def test_a_stage1_retrained_under_a_stage2_run_is_refused(micro_world, tmp_path):
    """Stage 2 stands on the stage-1 adapter as it was: a stage 1 retrained into the same directory afterwards
    would silently change the stage-2 model, so eval refuses it, naming the adapter and the fix."""
    w = micro_world
    s1, s2 = str(tmp_path / "out" / "stage1"), str(tmp_path / "out" / "stage2")
    s1_args = ["--stage", "1", "--model", w["base"], "--asqa", w["asqa"], "--out", s1, "--max-steps", "1",
               "--micro-batch", "2", "--grad-accum", "1", "--max-records", "8", "--val-share", "0"]
    train.main(s1_args)
    train.main(["--stage", "2", "--init", s1, "--model", w["base"], "--hotpot", w["hotpot"], "--out", s2,
                "--preset", "micro"])
    assert runs.check_base(s2, runs.read_lineage(s2))  # unchanged: accepted
    train.main(s1_args + ["--seed", "1", "--overwrite"])  # another stage 1 (another init) in the same place
    msg = error_of(ev.main, ["--model", w["base"], "--adapter", s2, "--asqa", w["asqa"]])
    assert msg == (f"error: {s1}/adapter_model.safetensors: changed since {s2} was trained on top of it "
                   f"({s2}/lineage.json records its digest); restore that adapter, or retrain {s2} on this one "
                   "(--overwrite)")
    edit_json(os.path.join(s2, "lineage.json"), lambda lin: lin.pop("merged_digests"))  # written before the record
    assert runs.check_base(s2, runs.read_lineage(s2))


def test_resume_on_a_changed_base_is_refused(micro_world, tmp_path):
    w = micro_world
    base, out = copy(w["base"], tmp_path / "base"), str(tmp_path / "cut")
    args = ["--stage", "1", "--model", base, "--asqa", w["asqa"], "--out", out, "--max-steps", "2", "--micro-batch",
            "2", "--grad-accum", "1", "--max-records", "8", "--val-share", "0", "--save-every", "1"]
    train.main(args + ["--stop-after", "1"])
    os.rename(os.path.join(base, "tokenizer.model"), os.path.join(tmp_path, "tokenizer.model"))
    shutil.copy(os.path.join(w["base"], "tokenizer.model"), base)  # a copy: the same bytes, accepted
    rebuild(base, lambda t: t["model.norm.weight"].mul_(2.0))
    msg = error_of(train.main, args + ["--resume"])
    assert msg == (f"error: {base}: model.safetensors changed since the run in {out} started on it "
                   f"({out}/train_config.json records their digests); restore that base to --resume, or start over "
                   "with --overwrite")
    edit_json(os.path.join(out, "train_config.json"), lambda c: c.pop("base_identity"))  # written before the record
    train.main(args + ["--resume"])
    assert steps(out) == [1, 2]


def test_file_digest_of_a_large_file_samples_it(tmp_path):
    """Over `whole` bytes a file is known by its size and 16 evenly spaced MiB: a change there is seen, one
    between the samples is not (documented in files.file_digest); below, it is its sha256."""
    f = tmp_path / "w.bin"
    f.write_bytes(os.urandom(40 * files.MiB))
    d = files.file_digest(str(f), whole=files.MiB)
    assert files.file_digest(str(f)) != d  # whole: a plain sha256
    for offset in (0, 20, 40 * files.MiB - 1):
        with open(f, "r+b") as fh:
            fh.seek(offset)
            b = fh.read(1)
            fh.seek(offset)
            fh.write(bytes([b[0] ^ 1]))
        assert files.file_digest(str(f), whole=files.MiB) != d
        with open(f, "r+b") as fh:
            fh.seek(offset)
            fh.write(b)
    with open(f, "r+b") as fh:  # between the first two samples (0-1 MiB and ~2.5-3.5 MiB): not seen
        fh.seek(2 * files.MiB)
        fh.write(b"\0" * 8)
    assert files.file_digest(str(f), whole=files.MiB) == d
    with open(f, "ab") as fh:
        fh.write(b"\0")
    assert files.file_digest(str(f), whole=files.MiB) != d


def test_init_without_an_adapter_is_refused(micro_world, tmp_path):
    w = micro_world
    for init in (w["base"], str(tmp_path)):
        msg = error_of(train.main, ["--stage", "2", "--init", init, "--model", w["base"], "--hotpot", w["hotpot"],
                                    "--out", str(tmp_path / "s2"), "--preset", "micro"])
        assert f"{init}: no lineage.json" in msg and "--init" in msg


# ---- class 6: a finished run is not overwritten by accident ----

def test_finished_or_unfinished_runs_are_not_overwritten_without_asking(micro_world, run1, tmp_path):
    w = micro_world
    run = copy(run1, tmp_path / "run")
    before = adapter(run)
    msg = error_of(train.main, stage1(w, run, "--max-steps", "2", "--seed", "5"))
    assert msg == (f"error: {run}: holds a finished run (adapter_model.safetensors); pass --overwrite to replace it, "
                   "or choose another --out")
    assert all(torch.equal(before[k], v) for k, v in adapter(run).items())
    train.main(stage1(w, run, "--max-steps", "2", "--seed", "5", "--overwrite"))
    assert not all(torch.equal(before[k], v) for k, v in adapter(run).items()) and steps(run) == [1, 2]
    cut = str(tmp_path / "cut")
    train.main(stage1(w, cut, "--max-steps", "4", "--stop-after", "2"))
    assert "holds an unfinished run (its checkpoint); pass --resume" in error_of(train.main, stage1(w, cut, "--max-steps", "4"))


def test_a_second_run_on_the_same_out_is_refused_while_the_first_writes(micro_world, tmp_path):
    out = tmp_path / "o"
    os.makedirs(out)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / "train.lock").write_text(str(live.pid))
        msg = error_of(train.main, stage1(micro_world, str(out), "--max-steps", "1"))
        assert msg == f"error: {out}/train.lock: another run (pid {live.pid}) is writing to {out}; wait for it, or choose another --out"
    finally:
        live.kill()
        live.wait()
    train.main(stage1(micro_world, str(out), "--max-steps", "1"))  # a stale lock (its process is gone) is taken over
    assert steps(str(out)) == [1] and not (out / "train.lock").exists()
