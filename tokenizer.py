"""The tokenizer and the chat templates of a model directory, each file read and validated in one place here.

    tok = Tokenizer(model_dir)          # tokenizer.model (sentencepiece) or tokenizer.json (HF `tokenizers`)
    template = chat_template(model_dir) # llama2 | chatml | llama3, or the one the model's own jinja
                                        # chat_template (tokenizer_config.json / chat_template.jinja) matches
    ids, labels = encode_chat(tok, user, output, template)

Every file is checked at this boundary: a tokenizer.json that is empty, cut off, not JSON or not a `tokenizers`
file, config files whose special tokens are not the tokenizer's, a chat_template that is not a string or does
not render, each ends in DataError, one line naming the file and the fix (scripts catch data.DataError, the
same class).
"""
import json
import os
import re
from dataclasses import dataclass

import sentencepiece as spm


class DataError(ValueError):
    """Input we cannot use; the message names the file, the field and the fix (scripts print one line)."""


def _json_file(file):
    """A model directory's JSON file (config.json, tokenizer_config.json...), or one line naming it."""
    try:
        with open(file, encoding="utf-8") as f:
            conf = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{file}: not valid JSON ({e}); the model directory's files are damaged") from None
    except OSError as e:  # unreadable (permissions), a directory
        raise DataError(f"{file}: cannot be read ({e.strerror}); make it readable, or copy the model's own") from None
    if not isinstance(conf, dict):
        raise DataError(f"{file}: expected a JSON object, found {type(conf).__name__}")
    return conf


def _read_text(path, missing):
    if not os.path.isfile(path):
        raise DataError(f"{path}: missing; {missing}")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}); save it as UTF-8") from None
    except OSError as e:  # unreadable (permissions)
        raise DataError(f"{path}: cannot be read ({e.strerror}); make it readable") from None


# ---- tokenizers ----

def read_tokenizer_json(file):
    """The one place a tokenizer.json is read: a `tokenizers` Tokenizer, or DataError naming the file when it is
    empty, not UTF-8 JSON (a cut-off copy), not a `tokenizers` file, unreadable by the library or without tokens."""
    fix = "copy the tokenizer.json that belongs to this model again"
    try:
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError:
        raise DataError(f"{file}: reading it needs the `tokenizers` package: pip install tokenizers") from None
    try:
        with open(file, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{file}: cannot be read ({e.strerror}); {fix}") from None
    if not raw.strip():
        raise DataError(f"{file}: empty; {fix}")
    try:
        text = raw.decode("utf-8")
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise DataError(f"{file}: not valid JSON ({str(e).splitlines()[0][:80]}; cut off?); {fix}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise DataError(f"{file}: not a `tokenizers` file (no \"model\" object: {text[:40]!r}...); {fix}")
    try:
        tok = HFTokenizer.from_str(text)
    except Exception as e:  # the library raises a bare Exception for every kind of bad file
        raise DataError(f"{file}: the `tokenizers` library cannot read it ({str(e).splitlines()[0][:100]}); "
                        f"{fix}") from None
    if not tok.get_vocab_size(with_added_tokens=True):
        raise DataError(f"{file}: holds no tokens; {fix}")
    return tok


class Tokenizer:
    """A model directory's tokenizer: tokenizer.model (sentencepiece: Llama-2, the tiny world) or, when only
    tokenizer.json exists (SmolLM2, Qwen2, Llama-3), the `tokenizers` library, an optional dependency imported
    only then. Special tokens are ids, added by the caller, never parsed out of sentencepiece text. Given a
    directory, its config.json must agree with the tokenizer's vocabulary."""

    def __init__(self, path):
        directory = path if os.path.isdir(path) else os.path.dirname(path)
        spm_file = os.path.join(path, "tokenizer.model") if os.path.isdir(path) else path
        json_file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
        if os.path.isfile(spm_file) and not spm_file.endswith(".json"):
            self.path, self.hf = spm_file, None
            try:
                self.sp = spm.SentencePieceProcessor(model_file=spm_file)
            except (RuntimeError, OSError) as e:  # sentencepiece raises RuntimeError for a damaged model
                raise DataError(f"{spm_file}: not a sentencepiece model ({str(e).splitlines()[0]}); "
                                "copy the tokenizer.model that belongs to this model again") from None
            self.vocab_size, self.bos_id, self.eos_id = self.sp.vocab_size(), self.sp.bos_id(), self.sp.eos_id()
            self.pad_id = max(self.sp.pad_id(), 0)  # padding is masked out of attention and loss anyway
        elif os.path.isfile(json_file):
            self.path = json_file
            self.hf = read_tokenizer_json(json_file)
            self.vocab_size = self.hf.get_vocab_size(with_added_tokens=True)
            self.bos_id, self.eos_id, self.pad_id = self._special_ids(directory)
        else:
            raise DataError(f"{path}: no tokenizer.model or tokenizer.json; the model directory needs the tokenizer "
                            "that ships with the model (or that `python train.py --stage 0` writes)")
        config = os.path.join(directory, "config.json")
        if os.path.isdir(path) and os.path.isfile(config):
            vocab = _json_file(config).get("vocab_size")
            if isinstance(vocab, int) and vocab > 0:  # a bad value is the model loader's to report
                self.check_vocab(vocab)

    def _special_ids(self, directory):
        """(bos, eos, pad) ids: config.json's *_token_id, else tokenizer_config.json's token strings. BOS may be
        None (a template that needs it then fails at encode); a list of EOS ids means its first."""
        ids = {}
        for name in ("config.json", "generation_config.json", "tokenizer_config.json"):
            file = os.path.join(directory, name)
            if os.path.isfile(file):
                conf = _json_file(file)
                fix = "the config files do not belong to this tokenizer.json: copy the model's own"
                for kind in ("bos", "eos", "pad"):
                    if kind in ids:  # an earlier file named it
                        continue
                    v = conf.get(f"{kind}_token_id")
                    token = conf.get(f"{kind}_token")
                    v = (v or [None])[0] if isinstance(v, list) else v
                    if v is None and token:
                        text = token.get("content") if isinstance(token, dict) else token
                        if not isinstance(text, str):
                            raise DataError(f"{file}: {kind}_token is {json.dumps(token)[:60]}, not a token string "
                                            'or {"content": token}; ' + fix)
                        v = self.hf.token_to_id(text)
                        if v is None:
                            raise DataError(f"{file}: {kind}_token {text!r} is not a token of {self.path}; {fix}")
                    elif v is not None and (type(v) is not int or v < 0 or self.hf.id_to_token(v) is None):
                        raise DataError(f"{file}: {kind}_token_id {json.dumps(v)[:40]} is not a token id of "
                                        f"{self.path} ({self.vocab_size} tokens); {fix}")
                    ids.setdefault(kind, v)
                ids = {k: v for k, v in ids.items() if v is not None}
        if "eos" not in ids:
            raise DataError(f"{directory}: no eos_token_id in config.json nor eos_token in tokenizer_config.json; "
                            "copy the model's own config files beside its tokenizer.json")
        return ids.get("bos"), ids["eos"], ids.get("pad", ids["eos"])

    def encode(self, text: str, bos=True, eos=False) -> list:
        if bos and self.bos_id is None:
            raise DataError(f"{self.path}: the model's config files name no BOS token, but the chat template "
                            "asks for one; pass a --template that starts without it")
        body = self.sp.encode(text) if self.hf is None else self.hf.encode(text, add_special_tokens=False).ids
        return [self.bos_id] * bos + body + [self.eos_id] * eos

    def decode(self, ids) -> str:
        return self.sp.decode(list(ids)) if self.hf is None else self.hf.decode(list(ids), skip_special_tokens=False)

    def token_id(self, text: str) -> int:
        """The id of a single special token such as '<|im_end|>'."""
        i = self.sp.piece_to_id(text) if self.hf is None else self.hf.token_to_id(text)
        if i is None or (self.hf is None and i == self.sp.unk_id()):
            raise DataError(f"{self.path}: no token {text!r}; this chat template does not fit this tokenizer "
                            "(pass the model's own --template)")
        return i

    def check_vocab(self, model_vocab_size: int):
        """sentencepiece: the same size; tokenizer.json: no id beyond the embedding (Qwen2 and Llama-3 pad
        their embedding matrices past the tokenizer's last id)."""
        if self.vocab_size != model_vocab_size and (self.hf is None or self.vocab_size > model_vocab_size):
            raise DataError(f"{self.path}: tokenizer has {self.vocab_size} tokens but the model's config.json "
                            f"says vocab_size {model_vocab_size}; use the tokenizer that belongs to this model")


# ---- chat templates, as data ----

@dataclass(frozen=True)
class ChatTemplate:
    """One model family's chat layout. The prompt (system and user message, opened for the assistant) is
    rendered as text and encoded in one piece; the response is encoded alone and closed by the end-of-turn
    token, so the labels mark exactly the response and that token. Placeholders: {system}, {user}."""
    name: str
    turns: str  # the prompt without a system message
    system_turns: str  # the prompt with one
    end_of_turn: str = ""  # the token that closes a response; "" = the tokenizer's EOS id (sentencepiece)
    bos: bool = True  # the prompt starts with the tokenizer's BOS id
    default_system: str = ""  # the system message the model's own template inserts when none is given
    trim: bool = False  # messages lose surrounding whitespace (Llama-3's template strips them)

    def render(self, user: str, system: str = None) -> str:
        system = system or self.default_system
        text = self.system_turns if system else self.turns
        if self.trim:
            user, system = user.strip(), (system or "").strip()
        # one pass, so a passage that contains "{user}" or "{system}" stays as it is
        return re.sub(r"\{(system|user)\}", lambda m: {"system": system, "user": user}[m.group(1)], text)

    def stop_id(self, tok) -> int:
        return tok.token_id(self.end_of_turn) if self.end_of_turn else tok.eos_id

    def encode_response(self, tok, output: str) -> list:
        return tok.encode(output.strip() if self.trim else output, bos=False) + [self.stop_id(tok)]


_CHATML_USER = "<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
_LLAMA3_USER = ("<|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n")
TEMPLATES = {
    # LLaMA-Factory's llama2, as the authors trained: `<s>[INST] {user} [/INST] {output} </s>`; the response's
    # leading space is sentencepiece's dummy prefix. The default for Llama-2 and the tiny world.
    "llama2": ChatTemplate("llama2", "[INST] {user} [/INST]", "[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]"),
    # SmolLM2, Qwen: no BOS; a model's own template may add a default system message (chat_template() reads it)
    "chatml": ChatTemplate("chatml", _CHATML_USER, "<|im_start|>system\n{system}<|im_end|>\n" + _CHATML_USER,
                           end_of_turn="<|im_end|>", bos=False),
    # Llama-3(.0) Instruct; 3.1+ templates add a dated system block this layout does not render
    "llama3": ChatTemplate("llama3", _LLAMA3_USER,
                           "<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>" + _LLAMA3_USER,
                           end_of_turn="<|eot_id|>", trim=True),
}
# a chat_template is taken for one of ours iff it holds all of that one's markers and no other's
_MARKERS = {"llama2": ("[INST]", "<<SYS>>"), "chatml": ("<|im_start|>",), "llama3": ("<|start_header_id|>",)}


def read_chat_template(model_dir) -> str:
    """The jinja chat template of an HF model directory (tokenizer_config.json or chat_template.jinja), or ""."""
    return _chat_template_file(model_dir)[1]


def _chat_template_file(model_dir, need_default=False):
    """The one place a model's chat template is read: (the file it is in or None, its text or ""). DataError
    naming the file when chat_template.jinja is not UTF-8, or tokenizer_config.json's chat_template is neither a
    string nor a list of {"name", "template"} strings; need_default: also when such a list has no "default"."""
    jinja = os.path.join(model_dir, "chat_template.jinja")
    if os.path.isfile(jinja):
        return jinja, _read_text(jinja, "")
    file = os.path.join(model_dir, "tokenizer_config.json")
    if not os.path.isfile(file):
        return None, ""
    template = _json_file(file).get("chat_template") or ""
    fix = "fix or remove its chat_template (or copy the model's own tokenizer_config.json again)"
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        for n, t in enumerate(template):
            if not (isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("template"), str)):
                raise DataError(f"{file}: chat_template is a list, but its item {n} is {json.dumps(t)[:60]}, not "
                                f'{{"name": NAME, "template": TEXT}}; {fix}')
        named = {t["name"]: t["template"] for t in template}
        if need_default and named and "default" not in named:
            raise DataError(f"{file}: chat_template lists templates named {', '.join(named)}, none of them "
                            f"'default'; pass --template NAME (one of {', '.join(TEMPLATES)})")
        template = named.get("default", "")
    if not isinstance(template, str):
        raise DataError(f"{file}: chat_template is {json.dumps(template)[:60]}, not a string or a list of "
                        f'{{"name", "template"}}; {fix}')
    return file, template


def _check_renders(file, source):
    """A chat template that jinja (as transformers runs it) cannot render for one user message is refused; it is
    read for its markers only, but a broken one is no model's own template. Without jinja2 nothing is checked."""
    try:
        import jinja2.sandbox
    except ImportError:
        return

    def raise_exception(message):
        raise jinja2.TemplateError(message)
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       extensions=["jinja2.ext.loopcontrols"])
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: "")
    try:
        env.from_string(source).render(messages=[{"role": "user", "content": "Hello"}], add_generation_prompt=True,
                                       bos_token="", eos_token="")
    except Exception as e:  # the template is foreign code: any error it raises is its own
        line = f" at line {e.lineno}" if getattr(e, "lineno", None) else ""
        raise DataError(f"{file}: its chat template does not render{line} ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:80] if str(e) else ''}); fix it, or pass --template NAME (one of "
                        f"{', '.join(TEMPLATES)})") from None


def chat_template(model_dir, name="auto") -> ChatTemplate:
    """--template NAME, or auto: the one template the model's own chat_template matches; a model without any
    chat template (Llama-2 as first published, the tiny world) gets llama2. A chatml model's fixed default
    system message (SmolLM2's "You are a helpful AI assistant named SmolLM...") is read from its template."""
    file, source = _chat_template_file(model_dir, need_default=name == "auto")
    if name == "auto":
        if source:
            _check_renders(file, source)
        found = [n for n, marks in _MARKERS.items() if all(m in source for m in marks)]
        if not source:
            found = ["llama2"]
        if len(found) != 1 or "Cutting Knowledge Date" in source:
            raise DataError(f"{file}: its chat template is not exactly one of {', '.join(TEMPLATES)} "
                            f"(matches: {', '.join(found) or 'none'}); pass --template NAME")
        name = found[0]
    if name not in TEMPLATES:
        raise DataError(f"--template {name!r}: must be auto or one of {', '.join(TEMPLATES)}")
    template = TEMPLATES[name]
    default = re.search(r"<\|im_start\|>system(?:\n|\\n)([^<'\"{}+]+?)<\|im_end\|>", source)
    if name == "chatml" and default:
        template = ChatTemplate(**{**template.__dict__, "default_system": default.group(1)})
    return template


def encode_chat(tok: Tokenizer, user: str, output: str = None, template: ChatTemplate = None, system: str = None):
    """Token ids of one conversation: the prompt (opened for the assistant) and, if given, the response closed
    by the end-of-turn token. Returns (input_ids, labels); labels are -100 on every prompt token, so the loss
    is on the response and its end-of-turn token only. The default template, llama2, is
    `<s>[INST] {user} [/INST] {output} </s>` with no system prompt, as the authors trained."""
    template = template or TEMPLATES["llama2"]
    prompt = tok.encode(template.render(user, system), bos=template.bos)
    response = [] if output is None else template.encode_response(tok, output)
    return prompt + response, [-100] * len(prompt) + response
