"""Files the scripts write and read: whole or absent after a crash or a full disk, and told apart by digest.

    write_text(path, text)          # written to path.tmp, then renamed over path
    append_text(metrics, row)       # whole lines; a failed append is cut back
    lines, torn = complete_lines(metrics)
    records, broken = read_jsonl(file)  # a JSON-lines file's records, and its unreadable lines
    base_identity(model_dir)        # {file: digest} of a base's config, weights and tokenizer
    check_out_dir("--out", out, ours=...)  # before any work: a file, unwritable, or someone else's: one line
"""
import hashlib
import json
import os
import tempfile

from safetensors import SafetensorError


class WriteError(OSError):
    """A file we could not write (a full disk); the message names it, the scripts add how to go on."""


def write_file(file, write):
    """The one way a result file is written: write(tmp) fills file + ".tmp", which then replaces `file`, so a
    crash or a full disk never leaves a torn `file` that looks complete. A failed write removes the .tmp and
    raises WriteError naming `file`."""
    tmp = file + ".tmp"
    try:
        write(tmp)
        os.replace(tmp, file)
    except (OSError, SafetensorError) as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise WriteError(f"{file}: could not write it ({str(e).splitlines()[0]})") from None


def write_text(file, text):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    write_file(file, write)


def append_text(file, text, sync=False):
    """Add `text` (whole lines) at the end of `file` (flushed; fsync'ed with sync=True). On a failure (a full
    disk) the file is cut back to where it was, so no torn line is left, and WriteError names it."""
    size = os.path.getsize(file) if os.path.exists(file) else 0
    try:
        with open(file, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            if sync:
                os.fsync(f.fileno())
    except OSError as e:
        if os.path.exists(file):
            os.truncate(file, size)
        raise WriteError(f"{file}: could not write it ({str(e).splitlines()[0]})") from None


MiB = 2**20


def file_digest(file, whole=64 * MiB, pieces=16):
    """sha256 (hex) of a file's bytes, read whole up to `whole` bytes. A larger file (a 7B's weights, 13 GB) is
    known, in a few MiB read, by its size and `pieces` evenly spaced MiB, the first and the last among them: a
    rewrite that changes its size, its safetensors header (every tensor's name, dtype, shape and offset) or any
    sampled MiB changes the digest; one that changes only bytes between the samples does not."""
    size = os.path.getsize(file)
    h = hashlib.sha256()
    with open(file, "rb") as f:
        if size <= whole:
            h.update(f.read())
        else:
            h.update(f"{size} bytes, {pieces} MiB samples\n".encode())
            for i in range(pieces):
                f.seek((size - MiB) * i // (pieces - 1))
                h.update(f.read(MiB))
    return h.hexdigest()


def base_identity(path):
    """{file: file_digest} of what a base model is: its config.json, weights (*.safetensors and the shard index)
    and tokenizer. lineage.json and train_config.json record it, so that a base rebuilt or re-downloaded under
    the same path is told apart from the one a run was trained on."""
    return {f: file_digest(os.path.join(path, f)) for f in sorted(os.listdir(path))
            if f.endswith(".safetensors") or f in ("config.json", "model.safetensors.index.json", "tokenizer.model",
                                                   "tokenizer.json")}


def base_changes(path, recorded):
    """The files of the base directory `path` that differ from `recorded` (a base_identity written earlier);
    [] when nothing was recorded (a run from before the record) or the directory is gone (loading it says so)."""
    if not recorded or not os.path.isdir(path):
        return []
    now = base_identity(path)
    return sorted(f for f in recorded.keys() | now.keys() if recorded.get(f) != now.get(f))


def complete_lines(file):
    """(the lines of a file written by appending whole lines, as bytes without their \n; whether the last one
    is torn: cut off without its \n by an interrupted append). A missing file has no lines."""
    if not os.path.exists(file):
        return [], False
    with open(file, "rb") as f:
        *lines, last = f.read().split(b"\n")
    return lines, bool(last)


def read_jsonl(path):
    """(the records of a JSON-lines file such as eval.py's <model>.jsonl, how many of its lines are unreadable). Appends end each line with \n
    (json escapes it inside strings): a last line without it was cut off by an interrupted write."""
    lines, torn = complete_lines(path)
    records, broken = [], int(torn)
    for line in lines:
        try:
            records.append(json.loads(line.decode("utf-8")))
        except (ValueError, TypeError):
            broken += 1
    return records, broken


def read_json(file, error=ValueError, what="valid JSON"):
    """json.load(file), or `error` with one line naming the file: every JSON file a script reads goes here."""
    try:
        with open(file, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise error(f"{file}: not valid JSON ({e}); expected {what}") from None


class OutError(ValueError):
    """An output directory a script must not or cannot write; the message names the flag, the path and the fix."""


PROBE = ".write-probe-"  # check_out_dir's own short-lived directory: never counted as something not ours


def check_out_dir(flag, value, path=None, ours=lambda name: False, marker=(), writer="this script"):
    """Before any work starts: refuse (OutError, one line naming `flag` and the fix) an output directory `path`
    (default `value`, what `flag` was given) that exists but is not a directory, lies under a file, cannot be
    written (tried by making a directory there, so a read-only filesystem is caught for root too) or holds
    something `writer` did not write. A directory is ours when it is empty or new, holds one of the `marker`
    files (a run record the writer writes first), or holds only entries `ours(name)` accepts."""
    path = value if path is None else path
    where = f"{flag} {value}: " + ("" if path == value else f"{path} ")
    if os.path.lexists(path) and not os.path.isdir(path):
        raise OutError(f"{where}exists and is not a directory; remove it, or pass another {flag}")
    parent = path
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent) or "."
    if not os.path.isdir(parent):
        raise OutError(f"{where}cannot be made: {parent} is a file, not a directory; pass another {flag}")
    if parent == path:
        try:
            names = [n for n in os.listdir(path) if not n.startswith(PROBE)]
        except OSError as e:
            raise OutError(f"{where}cannot be read ({e.strerror}); make it readable, or pass another {flag}") from None
        foreign = [] if any(m in names for m in marker) else sorted(n for n in names if not ours(n))
        if foreign:
            raise OutError(f"{where}holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}, which "
                           f"{writer} did not write; pass a new or empty {flag}, or move {'them' if len(foreign) > 1 else 'it'} "
                           "away")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=PROBE, dir=parent))
    except OSError as e:
        raise OutError(f"{where}cannot be written ({parent}: {e.strerror}); make {parent} writable, or pass another "
                       f"{flag}") from None
