"""The data of US-Tuning: every prompt string, the tokenizer, and the datasets built from raw ASQA / HotpotQA.

Paper words -> names here: a *known* question (pos_query) is answered by the passage it is asked over; an
*unknown* question (neg_query) is a sibling question of the same ambiguous ASQA entry, answered by another
passage, so the right reply is "Not Provided".

    rows = build_benchmark("ASQA.json")          # known/unknown benchmark, split by ASQA record id
    stage1 = stage1_records(rows)                # Cognition Assessment: Sufficient / Insufficient
    stage2 = stage2_records("hotpot_train_v1.1.json")   # causal instructions + CHECKING review
    tok, template = Tokenizer(model_dir), chat_template(model_dir)   # llama2 | chatml | llama3
    samples, dropped = tokenize_records(tok, stage1, cutoff_len=1024, template=template)

A record is {"id", "prompt", "context", "output"}: `prompt` is the full instruction (context inside),
`context` lets tokenisation shorten the passage (never the answer) to fit the cutoff. HotpotQA records also
carry `paragraphs` (their "\n"-join is `context`) and `evidence` (the indices of the paragraphs that
supporting_facts names), so an over-long prompt can lose its distractors before its evidence.
Prompt texts are the authors' (../shared/paper/prompts.json), typos included. Placeholders are filled by
plain string replacement, never str.format, because passages contain braces.
"""
import argparse
import hashlib
import itertools
import json
import os
import random
import re
import sys
from dataclasses import dataclass

import numpy as np
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
    if not isinstance(conf, dict):
        raise DataError(f"{file}: expected a JSON object, found {type(conf).__name__}")
    return conf


# ---- the authors' prompt texts, copied exactly ----

TASK_COGNITION = (
    "Cognition Assessment Task: You need to do the Cognition Assessment Task for the following query and context. I will give a query and a related context about the query. Your task is to judge whether the context is sufficient to answer the query. You must append either '<Sufficient>' or '<Insufficient>' after your answer. Your answer must not using any additional knowledge that is not mentioned in the given contexts.If the context is not sufficient to answer the question, please append the '<Insufficient>' after your answer.\n\n"
    'Here is the example.\n\n'
    ' QUERY:\n What happened to Jay Chou when he got old?\nCONTEXT:\n Jay Chou was the most famous singer in China when he was young, releasing many nostalgic albums and songs that are memorable to middle-aged people today.\nANSWER: \nJay Chou was the most famous singer in China.<Insufficient>\n\n'
    'Here is one query that you need to accomplish, you should only output one answer to it, and stop generating more queries:\n\n'
    'QUERY:\n {query}\nCONTEXT:\n {context}\nANSWER: \n'
)
TASK_QA = (
    "Question Answering Task: You need to do the Question Answering Tasks for the following query and context. {I0}\nI will give a question and several context texts about the question. {I1}Based on the given contexts, give an answer to the question. {I2}Your answer must not using any additional knowledge that is not mentioned in the given contexts. {I3}If the context is not sufficient to answer the question, please answer it with 'Not Provided' {I4}\n\n"
    'QUESTION:\n{query}\n\n'
    'CONTEXTS:\n{context}\n\n'
    'ANSWER: \n'
)
TASK_PROMPT = (
    'You should check whether your answer aligned the requirement by generating a Checking part, checking each sentence of the above instruction, with either <fulfilled> or <not fulfilled> mark behind the sentence, indicating whether the requirement is fulfilled or not.\nIf there is <not fulfilled> mark behind the sentence, you must modify your answer again to fulfill the requirement, by appending a new ANSWER and CHECKING part.\n\n'
    'e.g. Question Answering Task Requirements: You need to do the Task Prompt for the following query and context.\nEnsure the response is written in the past tense.\n\n'
    'QUESTION:\n Who is Jack Chen?\n\n'
    'CONTEXTS:\n People saying that Jack Chen is a famous singer in China. \n\n'
    'ANSWER: Jack Chen was a famous singer in China.\n\n'
    ' CHECKING:\nQuestion Answering Task: You need to do the Task Prompt for the following query and context.<fulfilled>\nEnsure the response is written in the past tense.<fulfilled>\n\n'
    '\nHere is an example for this task:\n\n'
    'e.g. Question Answering Task Requirements: You need to do the Task Prompt for the following query and context.\nEnsure the response is written in the past tense.\n\n'
    'QUESTION:\n Who is Jack Chen?\n\n'
    'CONTEXTS:\n People saying that Jack Chen is a famous singer in China. \n\n'
    'ANSWER: Jack Chen is a famous singer in China.\n CHECKING:\nQuestion Answering Task: You need to do the Task Prompt for the following query and context.<fulfilled>\nEnsure the response is written in the past tense.<not fulfilled>\nANSWER: Jack Chen was a famous singer in China.\nCHECKING:\nQuestion Answering Task: You need to do the Task Prompt for the following query and context.<fulfilled>\nEnsure the response is written in the past tense.<fulfilled>\n\n'
    '\nHere is the information of your task:\n\n'
    "Question Answering Task Requirements: You need to do the Task Prompt for the following query and context. {I0}\nI will give a question and several context texts about the question. {I1}Based on the given contexts, give an answer to the question. {I2}Your answer must not using any additional knowledge that is not mentioned in the given contexts. {I3}If the context is not sufficient to answer the question, please answer it with 'Not Provided' {I4}\n\n"
    'QUESTION:\n{query}\n\n'
    'CONTEXTS:\n{context}\n\n'
    'ANSWER: \n'
)
# The evaluation prompt is a system message and a user message; LLAMA2_CHAT_EVAL is the two in the llama2
# chat layout, the authors' string exactly. Other chat templates (chatml, llama3) get the same two messages.
EVAL_SYSTEM = "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions."
EVAL_USER = (
    "User:{task_assignment}I will give a question and several context texts about the question. Based on the given contexts, give a informative answer to the question. Your answer must not using any additional knowledge that is not mentioned in the given contexts. If the context is not sufficient to answer the question, please answer it with 'Not Provided'\n\n"
    'QUESTION:\n{question}\n\n'
    'CONTEXTS:\n{context}\n\n'
    'ANSWER: \n'
)
LLAMA2_CHAT_EVAL = "[INST] <<SYS>>\n" + EVAL_SYSTEM + "\n<</SYS>>\n\n" + EVAL_USER + " [/INST]"
TASK_ASSIGNMENT_PREFIX = "Trustworthy Question Answering Task: You need to utilize the ability learnt during both the Question Answering Task and Cognition Assessment Task. And only provide the answers which are sufficiently supported by the context, otherwise provide 'Not Provided'\n"
ASQA_CONTEXT_HEADER = 'This is a passage about {wikipage}:\n{context}'
PROMPTS = (TASK_COGNITION, TASK_PROMPT, TASK_QA, LLAMA2_CHAT_EVAL, TASK_ASSIGNMENT_PREFIX)  # every prompt text
REFUSAL = 'Not Provided'
NEG_WORDS_V3 = ('not mentioned', 'not provided', 'not given', "'t mentioned", "'t provided", "'t given", 'not provide', "'t provide", "'t mention", 'not mention', 'no context provided', 'insufficient', 'not familiar', 'not aware', 'apologize', 'not able to', 'not make sense', "'t make sense", "'t know", 'not know')
STAGE1_TARGETS = {'known': 'Sufficient', 'unknown': 'Insufficient'}

CHECKING = "CHECKING:"

# The requirement sentences of TASK_PROMPT's task section, in order; a causal instruction goes after the
# sentence of its slot (slot k follows sentence k). The first one is written as the prompt's own CHECKING
# example writes it ("Question Answering Task: ..." rather than "... Task Requirements: ...").
REQUIREMENTS = (
    "Question Answering Task: You need to do the Task Prompt for the following query and context.",
    "I will give a question and several context texts about the question.",
    "Based on the given contexts, give an answer to the question.",
    "Your answer must not using any additional knowledge that is not mentioned in the given contexts.",
    "If the context is not sufficient to answer the question, please answer it with 'Not Provided'",
)


def fill(template: str, **fields) -> str:
    """Replace {name} placeholders by plain string replacement (passages may contain braces)."""
    for name, value in fields.items():
        template = template.replace("{" + name + "}", value)
    return template


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
            raise DataError(f"{model_dir}: its chat template is not exactly one of {', '.join(TEMPLATES)} "
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


def eval_messages(question: str, context: str, task_prefix: bool):
    """The evaluation prompt's (system, user) messages; TASK_ASSIGNMENT_PREFIX only for fine-tuned models, as
    the authors did."""
    return EVAL_SYSTEM, fill(EVAL_USER, task_assignment=TASK_ASSIGNMENT_PREFIX if task_prefix else "",
                             question=question, context=context)


def eval_prompt(question: str, context: str, task_prefix: bool) -> str:
    """The evaluation prompt as one llama2 chat string (LLAMA2_CHAT_EVAL filled), as stage 0 trains on it."""
    system, user = eval_messages(question, context, task_prefix)
    return TEMPLATES["llama2"].render(user, system)


# ---- raw files ----

def _read_text(path, missing):
    if not os.path.isfile(path):
        raise DataError(f"{path}: missing; {missing}")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}); save it as UTF-8") from None


def _load_json(path, what):
    text = _read_text(path, f"download {what} (see README) or run without --asqa/--hotpot for the tiny world")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e}); expected {what}") from None


_strings = lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)
KINDS = {"a string": lambda v: isinstance(v, str), "a string or null": lambda v: v is None or isinstance(v, str),
         "an object": lambda v: isinstance(v, dict), "a list": lambda v: isinstance(v, list),
         "a list of strings": _strings,
         "a list of [title, [sentence, ...]]": lambda v: isinstance(v, list) and all(
             isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and _strings(p[1]) for p in v),
         "a list of [title, sentence index]": lambda v: isinstance(v, list) and all(
             isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], int) for p in v),
         "a non-empty list of [title or null, text]": lambda v: isinstance(v, list) and bool(v) and all(
             isinstance(p, list) and len(p) == 2 and (p[0] is None or isinstance(p[0], str)) and isinstance(p[1], str)
             for p in v),
         "eval or qa": lambda v: v in ("eval", "qa"), "true or false": lambda v: isinstance(v, bool),
         "an int from 0 to 4": lambda v: type(v) is int and 0 <= v <= 4}


def _need(obj, field, path, where, kind=None, fix="fix the file (or download it again)"):
    """obj[field], after checking that it is there and is of `kind` (a key of KINDS)."""
    if not isinstance(obj, dict) or field not in obj:
        raise DataError(f"{path}: {where} has no field {field!r}; this is not the expected file")
    if kind and not KINDS[kind](obj[field]):
        raise DataError(f"{path}: field {field!r} of {where} is {json.dumps(obj[field])[:60]}, not {kind}; {fix}")
    return obj[field]


def split_of(asqa_id: str, test_share: float = 0.5) -> str:
    """Seedless, stable split by ASQA record id: all permutations of one ambiguous question share a side."""
    h = int.from_bytes(hashlib.sha256(asqa_id.encode()).digest()[:8], "big") / 2**64
    return "test" if h < test_share else "train"


# ---- the benchmark: known vs unknown questions over one passage (SPEC 2) ----

def build_benchmark(asqa_path, filter="paper", test_share=0.5, stats=None):
    """Rows {id, asqa_id, context, known_question, known_answers, unknown_question, unknown_answers, split}
    from ASQA's train part. `stats` (a dict), if given, receives the counts of what was kept and dropped."""
    if filter not in ("paper", "strict"):
        raise ValueError(f"filter must be 'paper' or 'strict', not {filter!r}")
    data = _load_json(asqa_path, "ASQA.json")
    records = _need(data, "train", asqa_path, "the top-level object", "an object")
    st = dict.fromkeys(["records", "records_kept", "pairs_no_context", "pairs_no_wikipage", "pairs_no_answer",
                        "permutations", "dropped_by_filter", "rows_train", "rows_test"], 0)
    rows = []
    for asqa_id, rec in records.items():
        st["records"] += 1
        by_context = {}  # keyed by context: a later pair replaces an earlier one, as in the authors' code
        for qa in _need(rec, "qa_pairs", asqa_path, f"train[{asqa_id!r}]", "a list"):
            for field, kind in (("context", "a string"), ("question", "a string"),
                                ("short_answers", "a list of strings"), ("wikipage", "a string or null")):
                if field in qa or field != "wikipage":
                    _need(qa, field, asqa_path, f"a qa_pair of train[{asqa_id!r}]", kind)
            if qa["context"] == "No context provided":
                st["pairs_no_context"] += 1
            elif qa.get("wikipage") is None:
                st["pairs_no_wikipage"] += 1
            elif not [a for a in qa["short_answers"] if a.strip()]:
                st["pairs_no_answer"] += 1
            else:
                by_context[qa["context"]] = qa
        pairs = list(by_context.values())
        if len(pairs) < 2:
            continue
        st["records_kept"] += 1
        split = split_of(asqa_id, test_share)
        for (i, s1), (j, s2) in itertools.permutations(enumerate(pairs), 2):
            st["permutations"] += 1
            context = fill(ASQA_CONTEXT_HEADER, wikipage=s1["wikipage"], context=s1["context"])
            other = fill(ASQA_CONTEXT_HEADER, wikipage=s2["wikipage"], context=s2["context"]).lower()
            known = [a for a in s1["short_answers"] if a.strip()]
            unknown = [a for a in s2["short_answers"] if a.strip()]
            keep = (any(a.lower() in context.lower() for a in known)
                    and not any(a.lower() in other for a in known))
            if filter == "strict":  # the check the authors' code forgot: s2's answer must not be in s1's passage
                keep = keep and not any(a.lower() in context.lower() for a in unknown)
            if not keep:
                st["dropped_by_filter"] += 1
                continue
            st["rows_" + split] += 1
            rows.append(dict(id=f"{asqa_id}-{i}-{j}", asqa_id=asqa_id, context=context,
                             known_question=s1["question"], known_answers=known,
                             unknown_question=s2["question"], unknown_answers=unknown, split=split))
    if not rows:
        raise DataError(f"{asqa_path}: no benchmark rows survive the {filter!r} filter "
                        f"({st['records']} records read); check that this is ASQA.json with contexts")
    if stats is not None:
        stats.update(st)
    return rows


# ---- stage 1: Cognition Assessment (SPEC 3) ----

def cognition_prompt(question, context):
    return fill(TASK_COGNITION, query=question, context=context)


def stage1_records(rows, max_records=1000):
    """Two records per train row, in order: known question -> Sufficient, unknown question -> Insufficient."""
    out = []
    for row in rows:
        if row["split"] != "train":
            continue
        for kind, question in (("known", row["known_question"]), ("unknown", row["unknown_question"])):
            out.append(dict(id=f"{row['id']}-{kind}", prompt=cognition_prompt(question, row["context"]),
                            context=row["context"], output=STAGE1_TARGETS[kind]))
    return out[:max_records]


def refusal_records(rows, max_records=1000, task_prefix=True):
    """The "refusal SFT" baseline (R-Tuning's idea in this setting), as many records as stage 1's: two per train
    row, in order, in the evaluation prompt (eval_messages' system and user message, with TASK_ASSIGNMENT_PREFIX
    as eval gives every fine-tuned model): known question -> its first gold short answer, unknown -> REFUSAL."""
    out = []
    for row in rows:
        if row["split"] != "train":
            continue
        for kind, output in (("known", row["known_answers"][0]), ("unknown", REFUSAL)):
            system, user = eval_messages(row[kind + "_question"], row["context"], task_prefix)
            out.append(dict(id=f"{row['id']}-{kind}", system=system, prompt=user, context=row["context"],
                            output=output))
    return out[:max_records]


# ---- stage 2: causal instructions with a CHECKING review (SPEC 4) ----

def _letters(a):
    return any(c.isalpha() for c in a)


# (sentence, apply(answer) -> answer that fulfils it, check(answer) -> bool). The authors' GPT-4 list is
# unpublished; ours is verifiable, so targets need no API and eval can measure adherence. A bare gold
# answer fails every check except: lower case (an answer already in lower case, e.g. "yes") and hyphens
# (a one-word answer).
INSTRUCTIONS = (
    ("Write the answer in capital letters.", str.upper, lambda a: _letters(a) and a == a.upper()),
    ("Write the answer in lower case letters.", str.lower, lambda a: _letters(a) and a == a.lower()),
    ("Wrap the answer in double quotes.", lambda a: f'"{a}"', lambda a: len(a) > 1 and a[0] == a[-1] == '"'),
    ("Wrap the answer in square brackets.", lambda a: f"[{a}]", lambda a: a.startswith("[") and a.endswith("]")),
    ("Wrap the answer in parentheses.", lambda a: f"({a})", lambda a: a.startswith("(") and a.endswith(")")),
    ("Begin the answer with \"The answer is\".", lambda a: f"The answer is {a}",
     lambda a: a.startswith("The answer is")),
    ("Begin the answer with the word \"Sure\".", lambda a: f"Sure, {a}", lambda a: a.startswith("Sure")),
    ("End the answer with an exclamation mark.", lambda a: a.rstrip(".") + "!", lambda a: a.endswith("!")),
    ("End the answer with a full stop.", lambda a: a.rstrip("!?.") + ".", lambda a: a.endswith(".")),
    ("Write the answer in bold with double asterisks.", lambda a: f"**{a}**",
     lambda a: len(a) > 4 and a.startswith("**") and a.endswith("**")),
    ("Give the answer as a bullet point that starts with \"- \".", lambda a: f"- {a}", lambda a: a.startswith("- ")),
    ("Give the answer twice, separated by a semicolon.", lambda a: f"{a}; {a}",
     lambda a: a.count("; ") == 1 and a.split("; ")[0] == a.split("; ")[1]),
    ("Finish the answer with the sentence \"I hope this helps.\"", lambda a: f"{a} I hope this helps.",
     lambda a: a.endswith(" I hope this helps.")),
    ("Join the words of the answer with hyphens instead of spaces.", lambda a: "-".join(a.split()),
     lambda a: " " not in a.strip()),
)


def instruction_prompt(template, question, context, instruction="", slot=0):
    """Fill TASK_PROMPT / TASK_QA with one causal instruction in slot I{slot}; the others stay empty."""
    slots = {f"I{k}": "" for k in range(5)}
    if instruction:  # I1..I3 run straight into the next sentence, so they get a separating space
        slots[f"I{slot}"] = instruction + (" " if slot in (1, 2, 3) else "")
    return fill(template, query=question, context=context, **slots)


def requirement_sentences(instruction, slot):
    sentences = list(REQUIREMENTS)
    sentences.insert(slot + 1, instruction)
    return sentences


def checking_block(sentences, failed=()):
    return CHECKING + "\n" + "\n".join(
        s + ("<not fulfilled>" if s in failed else "<fulfilled>") for s in sentences)


def stage2_target(gold, instruction_index, slot, revise):
    """The fulfilled answer + an all-fulfilled CHECKING; when revising, first the plain answer marked
    <not fulfilled>, then `ANSWER: <fixed>` and a second CHECKING (the review module of the paper's example)."""
    sentence, apply, _ = INSTRUCTIONS[instruction_index]
    sentences = requirement_sentences(sentence, slot)
    fixed = apply(gold) + "\n" + checking_block(sentences)
    if not revise:
        return fixed
    return gold + "\n" + checking_block(sentences, failed={sentence}) + "\nANSWER: " + fixed


def hotpot_context(item):
    """The 10 paragraphs, sentences joined with "", paragraphs with "\\n", titles dropped (authors' format)."""
    return "\n".join(hotpot_paragraphs(item)[0])


def hotpot_paragraphs(item):
    """(paragraph texts, indices of the supporting ones: those whose title supporting_facts names, or None
    when there are none, e.g. no supporting_facts: then no paragraph is a distractor)."""
    texts = ["".join(sentences) for _title, sentences in item["context"]]
    titles = {title for title, _ in item.get("supporting_facts", [])}
    return texts, [i for i, (title, _) in enumerate(item["context"]) if title in titles] or None


def load_hotpot(hotpot_path):
    items = _load_json(hotpot_path, "hotpot_train_v1.1.json")
    if not isinstance(items, list):
        raise DataError(f"{hotpot_path}: expected a JSON list of HotpotQA items")
    for k, item in enumerate(items):
        for field, kind in (("_id", "a string"), ("question", "a string"), ("answer", "a string"),
                            ("context", "a list of [title, [sentence, ...]]")):
            _need(item, field, hotpot_path, f"item {k}", kind)
        if "supporting_facts" in item:
            _need(item, "supporting_facts", hotpot_path, f"item {k}", "a list of [title, sentence index]")
    return items


def stage2_items(hotpot_path, n=300, start=0, seed=0, revision_share=0.25):
    """Pick, per HotpotQA item, a causal instruction, its slot and whether the target revises itself.
    A revision needs an instruction the gold answer violates, so those items draw only among such ones."""
    rng = random.Random(seed)
    out = []
    for item in load_hotpot(hotpot_path)[start:start + n]:
        revise = rng.random() < revision_share
        choices = [i for i, (_, _, check) in enumerate(INSTRUCTIONS) if not (revise and check(item["answer"]))]
        out.append(dict(item=item, instruction=rng.choice(choices or range(len(INSTRUCTIONS))),
                        slot=rng.randrange(5), revise=revise and bool(choices)))
    return out


def stage2_records(hotpot_path, n=300, start=0, seed=0, revision_share=0.25, targets_file=None):
    picks = stage2_items(hotpot_path, n, start, seed, revision_share)
    teacher = _read_targets(targets_file, {p["item"]["_id"] for p in picks}) if targets_file else {}
    out = []
    for p in picks:
        item, context = p["item"], hotpot_context(p["item"])
        prompt = instruction_prompt(TASK_PROMPT, item["question"], context,
                                    INSTRUCTIONS[p["instruction"]][0], p["slot"])
        output = teacher.get(item["_id"]) or stage2_target(item["answer"], p["instruction"], p["slot"], p["revise"])
        paragraphs, evidence = hotpot_paragraphs(item)
        out.append(dict(id=item["_id"], prompt=prompt, context=context, output=output,
                        answer=item["answer"], instruction=p["instruction"], slot=p["slot"],
                        paragraphs=paragraphs, evidence=evidence))
    return out


def _read_targets(path, ids):
    targets = {}
    text = _read_text(path, 'pass --stage2-targets a JSONL file of {"_id", "output"} lines')
    for n, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f'{path}: line {n} is not valid JSON ({e}); each line must be one {{"_id", "output"}} '
                                "object") from None
            for field in ("_id", "output"):
                _need(rec, field, path, f"line {n}", "a string")
            targets[rec["_id"]] = rec["output"]
    unknown = sorted(set(targets) - ids)
    if unknown:
        raise DataError(f"{path}: {len(unknown)} _id values are not among the stage-2 HotpotQA items, e.g. "
                        f"{unknown[0]!r}; write targets for the first n items of the same HotpotQA file")
    return targets


def qa_records(hotpot_path, n=300):
    """The "QA only" ablation: TASK_QA with empty instruction slots -> the gold short answer."""
    out = []
    for item in load_hotpot(hotpot_path)[:n]:
        context = hotpot_context(item)
        paragraphs, evidence = hotpot_paragraphs(item)
        out.append(dict(id=item["_id"], prompt=instruction_prompt(TASK_QA, item["question"], context),
                        context=context, output=item["answer"], paragraphs=paragraphs, evidence=evidence))
    return out


def base_records(corpus_path):
    """Stage 0 (tiny world only): the base model's instruction data, one JSON object per line, either a
    question answered from passages, {"question", "answer", "passages": [[title or null, text]], "template":
    "eval" | "qa", optional "prefix" (eval: with TASK_ASSIGNMENT_PREFIX), "request" and "slot" (qa: a format
    request in slot I{slot})}, or a general skill such as copying, {"instruction", "output"}; either may say
    "phase": 2 (train.py's second, polish phase, --polish-steps); default 1, the main phase. The answer is
    always in the passages, so the base learns to answer, never to refuse: the paper's diagnosis. A line that is
    not such an object is refused with its number."""
    text = _read_text(corpus_path, "stage 0 reads the tiny world's base_corpus.jsonl (python tinyworld.py writes "
                                   "it); leave out --base-corpus for data/tiny's")
    out = []
    for n, line in enumerate(text.split("\n")):
        if not line.strip():
            continue
        where = f"line {n + 1}"
        try:
            qa = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{corpus_path}: {where} is not valid JSON ({e}); each line must be one JSON object "
                            "(see data.base_records)") from None
        if not isinstance(qa, dict):
            raise DataError(f"{corpus_path}: {where} is {json.dumps(qa)[:40]}, not a JSON object; each line must be "
                            'one {"question", "answer", "passages", "template"} or {"instruction", "output"}')
        fix = "fix the line (python tinyworld.py writes the tiny world's corpus)"
        phase = _need(qa, "phase", corpus_path, where, "an int from 0 to 4", fix) if "phase" in qa else 1
        if "instruction" in qa:
            prompt, output = (_need(qa, field, corpus_path, where, "a string", fix) for field in ("instruction", "output"))
            out.append(dict(id=f"base{n}", prompt=prompt, context="", output=output, phase=phase))
            continue
        for field, kind in (("question", "a string"), ("answer", "a string"),
                            ("passages", "a non-empty list of [title or null, text]"), ("template", "eval or qa")):
            _need(qa, field, corpus_path, where, kind, fix)
        for field, kind in (("prefix", "true or false"), ("request", "a string"), ("slot", "an int from 0 to 4")):
            if field in qa:
                _need(qa, field, corpus_path, where, kind, fix)
        context = "\n".join(fill(ASQA_CONTEXT_HEADER, wikipage=title, context=text) if title else text
                            for title, text in qa["passages"])
        if qa["template"] == "eval":
            prompt = eval_prompt(qa["question"], context, task_prefix=qa.get("prefix", False))
            out.append(dict(id=f"base{n}", prompt=prompt, context=context, output=qa["answer"], format="raw",
                            phase=phase))
        else:
            prompt = instruction_prompt(TASK_QA, qa["question"], context, qa.get("request", ""), qa.get("slot", 0))
            out.append(dict(id=f"base{n}", prompt=prompt, context=context, output=qa["answer"], phase=phase))
    if not out:
        raise DataError(f"{corpus_path}: holds no records; stage 0 needs one JSON object per line (python "
                        "tinyworld.py writes the tiny world's)")
    return out


def whole_words(path):
    """Stage 0's --whole-words: one word per line, each kept as one token by the tokenizer; a blank line, a word
    holding whitespace (never one token) or a repeated word (sentencepiece refuses it) is refused."""
    lines = _read_text(path, "a file of one word per line (python tinyworld.py writes the tiny world's "
                             "world_words.txt); leave out --whole-words for data/tiny's").split("\n")
    if lines[-1] == "":
        lines.pop()  # the last line's newline
    seen = {}
    for n, word in enumerate(lines, 1):
        if not word.strip():
            raise DataError(f"{path}: line {n} is blank; write one word per line, no blank lines")
        if word.split() != [word]:
            raise DataError(f"{path}: line {n}, {word!r}, holds whitespace; write one word per line (a word with "
                            "a space is never one token)")
        if word in seen:
            raise DataError(f"{path}: line {n} repeats {word!r} of line {seen[word]}; write each word once")
        seen[word] = n
    if not seen:
        raise DataError(f"{path}: holds no words; write one word per line (python tinyworld.py writes the tiny "
                        "world's)")
    return list(seen)


# ---- tokenisation for training ----

TRUNCATIONS = ("evidence", "paper")


def tokenize_records(tok, records, cutoff_len=1024, template: ChatTemplate = None, truncation="evidence",
                     stats=None):
    """encode_chat per record (the llama2 template unless given); a prompt too long for cutoff_len is shortened
    in its context, never in its answer. truncation "paper" cuts the end of the context, as the authors'
    LLaMA-Factory cutoff did; "evidence" first drops the distractor paragraphs of a record with `evidence`
    (HotpotQA: those supporting_facts does not name), the last first, keeping the order of the rest, and cuts
    the end only if the prompt is still too long. Ten HotpotQA paragraphs after TASK_PROMPT overflow Llama-2's
    1024 tokens, and a cut end takes the supporting paragraph as often as not: the target then teaches an
    answer without its evidence. Returns (samples [(input_ids, labels)], number of records dropped because
    even an empty context leaves no room for the whole answer); `stats` (a dict), if given, receives the
    counts records, over_cutoff, lost_evidence (kept samples missing a whole supporting paragraph), dropped."""
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation must be one of {TRUNCATIONS}, not {truncation!r}")
    template = template or TEMPLATES["llama2"]
    samples, st = [], dict.fromkeys(["records", "over_cutoff", "lost_evidence", "dropped"], 0)
    for rec in records:
        if rec.get("format") == "raw" and template.name != "llama2":
            raise DataError(f"record {rec.get('id')}: a whole llama2 chat prompt (stage 0's eval-format data) "
                            f"cannot be trained with the {template.name} template")

        def encode(prompt):  # a "raw" prompt (stage 0's eval format) is already a whole llama2 chat prompt
            if rec.get("format") != "raw":
                return encode_chat(tok, prompt, rec["output"], template, rec.get("system"))
            response = template.encode_response(tok, rec["output"])
            ids = tok.encode(prompt, bos=True)
            return ids + response, [-100] * len(ids) + response
        st["records"] += 1
        ids, labels = encode(rec["prompt"])
        context, evidence = rec["context"], rec.get("evidence")
        if len(ids) > cutoff_len:
            st["over_cutoff"] += 1
            # a record without a context (stage 0's copies) has nothing to cut: it is dropped below
            head, _, tail = rec["prompt"].rpartition(context) if context else (rec["prompt"], "", "")
            if truncation == "evidence" and evidence is not None:
                kept = list(range(len(rec["paragraphs"])))
                distractors = [i for i in kept if i not in evidence]
                while len(ids) > cutoff_len and distractors:
                    kept.remove(distractors.pop())
                    context = "\n".join(rec["paragraphs"][i] for i in kept)
                    ids, labels = encode(head + context + tail)
            ctx_ids = None
            while len(ids) > cutoff_len:  # cut the end of what is left of the context
                if ctx_ids is None:
                    ctx_ids = tok.encode(context, bos=False)
                keep = len(ctx_ids) - (len(ids) - cutoff_len)
                if keep <= 0:
                    break
                ctx_ids = ctx_ids[:keep]
                context = tok.decode(ctx_ids)
                ids, labels = encode(head + context + tail)
        if len(ids) > cutoff_len:
            st["dropped"] += 1
            continue
        samples.append((ids, labels))
        if evidence is not None and not all(rec["paragraphs"][i] in context for i in evidence):
            st["lost_evidence"] += 1
    if stats is not None:
        stats.update(st)
    return samples, st["dropped"]


def truncation_report(tok, records, cutoff_len=1024, template: ChatTemplate = None, name="training") -> str:
    """One line for the run's records: how many prompts overflow cutoff_len and, under each truncation rule,
    how many samples lose a supporting paragraph and how many are dropped; "" if no record names its evidence."""
    if not any(r.get("evidence") is not None for r in records):
        return ""
    st = {}
    for rule in TRUNCATIONS:
        st[rule] = {}
        tokenize_records(tok, records, cutoff_len, template, rule, st[rule])
    ev, pa = st["evidence"], st["paper"]
    return (f"{name} prompts over {cutoff_len} tokens: {ev['over_cutoff']} of {ev['records']}; lost a supporting "
            f"paragraph: paper {pa['lost_evidence']}, evidence {ev['lost_evidence']}; dropped (no room for the "
            f"answer): paper {pa['dropped']}, evidence {ev['dropped']}")


def collate(samples, pad_id):
    """Right-pad to the longest sample: (input_ids, labels) int64 arrays, labels -100 on padding."""
    T = max(len(ids) for ids, _ in samples)
    ids = np.full((len(samples), T), pad_id, dtype=np.int64)
    labels = np.full((len(samples), T), -100, dtype=np.int64)
    for b, (x, y) in enumerate(samples):
        ids[b, :len(x)], labels[b, :len(y)] = x, y
    return ids, labels


def write_jsonl(path, records):
    with open(path + ".tmp", "w") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(path + ".tmp", path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Build every US-Tuning dataset from raw ASQA / HotpotQA files.")
    ap.add_argument("--asqa", required=True)
    ap.add_argument("--hotpot", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--filter", choices=["paper", "strict"], default="paper")
    ap.add_argument("--tokenizer", help="tokenizer.model, to count samples dropped at --cutoff-len")
    ap.add_argument("--cutoff-len", type=int, default=1024)
    ap.add_argument("--truncation", choices=TRUNCATIONS, default="evidence",
                    help="over-long contexts: evidence (drop HotpotQA distractor paragraphs first) | paper (cut the end)")
    args = ap.parse_args(argv)
    try:
        stats = {}
        rows = build_benchmark(args.asqa, args.filter, stats=stats)
        sets = {"benchmark": rows, "stage1": stage1_records(rows), "stage2": stage2_records(args.hotpot),
                "qa": qa_records(args.hotpot)}
        os.makedirs(args.out, exist_ok=True)
        print("benchmark: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
        tok = Tokenizer(args.tokenizer) if args.tokenizer else None
        for name, recs in sets.items():
            write_jsonl(os.path.join(args.out, name + ".jsonl"), recs)
            extra = ""
            if tok and name != "benchmark":
                dropped = tokenize_records(tok, recs, args.cutoff_len, truncation=args.truncation)[1]
                extra = f", {dropped} dropped at cutoff {args.cutoff_len}"
            print(f"{name}.jsonl: {len(recs)} records{extra}")
            report = truncation_report(tok, recs, args.cutoff_len, name=name) if tok and name != "benchmark" else ""
            if report:
                print("  " + report)
    except DataError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
