"""Stage 0, the tiny world only: rebuild its base model (tiny/base) from scratch, the stand-in for Llama-2-chat.

    python train.py --stage 0      # a BPE tokenizer on the world's text, then a small Llama, all parameters trained

Stages 1-2 never come here. train.py calls four pieces: base_records (the corpus: questions answered from
passages, so the base learns to answer and never to refuse, the paper's diagnosis), train_tokenizer,
new_base_model, and polish_phase (the shipped base's second phase, on the corpus's "phase": 2 records).
"""
import io
import json
import os

import torch

import data
from files import write_file
from model import Llama, ModelArgs


def base_records(corpus_path):
    """Stage 0 (tiny world only): the base model's instruction data, one JSON object per line, either a
    question answered from passages, {"question", "answer", "passages": [[title or null, text]], "template":
    "eval" | "qa", optional "prefix" (eval: with TASK_ASSIGNMENT_PREFIX), "request" and "slot" (qa: a format
    request in slot I{slot})}, or a general skill such as copying, {"instruction", "output"}; either may say
    "phase": 2 (train.py's second, polish phase, --polish-steps); default 1, the main phase. The answer is
    always in the passages, so the base learns to answer, never to refuse: the paper's diagnosis. A line that is
    not such an object is refused with its number."""
    text = data._read_text(corpus_path, "stage 0 reads the tiny world's base_corpus.jsonl (python tinyworld.py writes "
                                   "it); leave out --base-corpus for data/tiny's")
    out = []
    for n, line in enumerate(text.split("\n")):
        if not line.strip():
            continue
        where = f"line {n + 1}"
        try:
            qa = json.loads(line)
        except json.JSONDecodeError as e:
            raise data.DataError(f"{corpus_path}: {where} is not valid JSON ({e}); each line must be one JSON object "
                            "(see stage0.base_records)") from None
        if not isinstance(qa, dict):
            raise data.DataError(f"{corpus_path}: {where} is {json.dumps(qa)[:40]}, not a JSON object; each line must be "
                            'one {"question", "answer", "passages", "template"} or {"instruction", "output"}')
        fix = "fix the line (python tinyworld.py writes the tiny world's corpus)"
        phase = data._need(qa, "phase", corpus_path, where, "1 or 2", fix) if "phase" in qa else 1
        if "instruction" in qa:
            prompt, output = (data._need(qa, field, corpus_path, where, "a string", fix) for field in ("instruction", "output"))
            out.append(dict(id=f"base{n}", prompt=prompt, context="", output=output, phase=phase))
            continue
        for field, kind in (("question", "a string"), ("answer", "a string"),
                            ("passages", "a non-empty list of [title or null, text]"), ("template", "eval or qa")):
            data._need(qa, field, corpus_path, where, kind, fix)
        for field, kind in (("prefix", "true or false"), ("request", "a string"), ("slot", "an int from 0 to 4")):
            if field in qa:
                data._need(qa, field, corpus_path, where, kind, fix)
        context = "\n".join(data.fill(data.ASQA_CONTEXT_HEADER, wikipage=title, context=text) if title else text
                            for title, text in qa["passages"])
        if qa["template"] == "eval":
            prompt = data.eval_prompt(qa["question"], context, task_prefix=qa.get("prefix", False))
            out.append(dict(id=f"base{n}", prompt=prompt, context=context, output=qa["answer"], format="raw",
                            phase=phase))
        else:
            prompt = data.instruction_prompt(data.TASK_QA, qa["question"], context, qa.get("request", ""), qa.get("slot", 0))
            out.append(dict(id=f"base{n}", prompt=prompt, context=context, output=qa["answer"], phase=phase))
    if not out:
        raise data.DataError(f"{corpus_path}: holds no records; stage 0 needs one JSON object per line (python "
                        "tinyworld.py writes the tiny world's)")
    return out


def whole_words(path):
    """Stage 0's --whole-words: one word per line, each kept as one token by the tokenizer; a blank line, a word
    holding whitespace (never one token) or a repeated word (sentencepiece refuses it) is refused."""
    lines = data._read_text(path, "a file of one word per line (python tinyworld.py writes the tiny world's "
                             "world_words.txt); leave out --whole-words for data/tiny's").split("\n")
    if lines[-1] == "":
        lines.pop()  # the last line's newline
    seen = {}
    for n, word in enumerate(lines, 1):
        if not word.strip():
            raise data.DataError(f"{path}: line {n} is blank; write one word per line, no blank lines")
        if word.split() != [word]:
            raise data.DataError(f"{path}: line {n}, {word!r}, holds whitespace; write one word per line (a word with "
                            "a space is never one token)")
        if word in seen:
            raise data.DataError(f"{path}: line {n} repeats {word!r} of line {seen[word]}; write each word once")
        seen[word] = n
    if not seen:
        raise data.DataError(f"{path}: holds no words; write one word per line (python tinyworld.py writes the tiny "
                        "world's)")
    return list(seen)


def train_tokenizer(cfg, records, out):
    """A BPE sentencepiece model laid out like Llama-2's (unk 0, bos 1, eos 2, digits split, byte fallback,
    whitespace kept) on the world's text and every prompt template of data.py. Each word of --whole-words (the
    world's names and years) is one piece: a tiny model copies a one-token name with one attention step, where a
    multi-token one needs induction heads it forms late (docs/tiny-world-log.md)."""
    import sentencepiece as spm
    words = whole_words(cfg.whole_words) if cfg.whole_words else []
    templates = list(data.PROMPTS) + [s for s, _, _ in data.INSTRUCTIONS]
    text = [r["prompt"] + " " + r["output"] for r in records] + templates * 50
    model = io.BytesIO()  # written from memory: a model_prefix would put the output path into the file
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(text), model_writer=model, vocab_size=cfg.vocab_size,
            model_type="bpe", byte_fallback=True, split_digits=True, user_defined_symbols=words, unk_id=0, bos_id=1,
            eos_id=2, pad_id=-1, normalization_rule_name="identity", remove_extra_whitespaces=False,
            max_sentence_length=16384, num_threads=1, minloglevel=2)  # one thread: the same pieces on every rebuild
    except RuntimeError as e:  # e.g. more --whole-words and characters than --vocab-size holds
        raise data.DataError(f"--vocab-size {cfg.vocab_size}: sentencepiece cannot build this tokenizer "
                             f"({str(e).strip().splitlines()[-1].split('] ')[-1]}); raise --vocab-size or give fewer "
                             "--whole-words") from None
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "tokenizer.model")

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(model.getvalue())
    write_file(path, write)
    return data.Tokenizer(path)


def base_args(cfg, vocab_size, bos_id=1, eos_id=2):
    return ModelArgs(hidden_size=cfg.hidden_size, intermediate_size=cfg.hidden_size * 3, num_hidden_layers=cfg.num_layers,
                     num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.num_heads, vocab_size=vocab_size,
                     max_position_embeddings=2048, rms_norm_eps=1e-5, bos_token_id=bos_id, eos_token_id=eos_id,
                     tie_word_embeddings=cfg.tie_embeddings)


def new_base_model(cfg, tok):
    args = base_args(cfg, tok.vocab_size, tok.bos_id, tok.eos_id)
    torch.manual_seed(cfg.seed)
    model = Llama(args)
    for name, p in model.named_parameters():
        if p.dim() == 2:  # HF's initializer_range 0.02; norms stay at 1
            torch.nn.init.normal_(p, std=0.02)
    # padded batches, not loss()'s packing: the same loss to rounding, but packing changes bf16's rounding,
    # and the shipped base's first phase was trained padded (its metrics.jsonl: a rebuild repeats it bit for bit)
    model.packed = False
    return model


def polish_phase(cfg, records, tok, template):
    """The second phase (--polish-steps) on the corpus's "phase": 2 records, after the main one, as train.py's
    phase tuple: (name, training samples, steps, peak lr, seed offset of its data order; 1000 is the shipped
    base's), or None without --polish-steps."""
    if not cfg.polish_steps:
        return None
    phase_records = [r for r in records if r.get("phase") == 2]
    if not phase_records:
        raise data.DataError(f'{cfg.base_corpus}: --polish-steps {cfg.polish_steps} needs records with "phase": 2; '
                             "none there (python tinyworld.py writes them), or pass --polish-steps 0")
    samples = data.tokenize_records(tok, phase_records, cfg.cutoff_len, template, cfg.truncation)[0]
    if not samples:
        raise data.DataError(f"every polish-phase record of {cfg.base_corpus} is longer than --cutoff-len "
                             f"{cfg.cutoff_len}")
    return ("polish", samples, cfg.polish_steps, cfg.polish_lr, 1000)
