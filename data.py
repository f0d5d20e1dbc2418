"""The data of US-Tuning: every prompt string, the tokenizer, and the datasets built from raw ASQA / HotpotQA.

Paper words -> names here: a *known* question (pos_query) is answered by the passage it is asked over; an
*unknown* question (neg_query) is a sibling question of the same ambiguous ASQA entry, answered by another
passage, so the right reply is "Not Provided".

    rows = build_benchmark("ASQA.json")          # known/unknown benchmark, split by ASQA record id
    stage1 = stage1_records(rows)                # Cognition Assessment: Sufficient / Insufficient
    stage2 = stage2_records("hotpot_train_v1.1.json")   # causal instructions + CHECKING review
    samples, dropped = tokenize_records(tok, stage1, cutoff_len=1024)

A record is {"id", "prompt", "context", "output"}: `prompt` is the full instruction (context inside),
`context` lets tokenisation shorten the passage (never the answer) to fit the cutoff.
Prompt texts are the authors' (../shared/paper/prompts.json), typos included. Placeholders are filled by
plain string replacement, never str.format, because passages contain braces.
"""
import argparse
import hashlib
import itertools
import json
import os
import random
import sys

import numpy as np
import sentencepiece as spm


class DataError(ValueError):
    """Input we cannot use; the message names the file, the field and the fix (scripts print one line)."""


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
LLAMA2_CHAT_EVAL = (
    "[INST] <<SYS>>\nA chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions.\n<</SYS>>\n\n"
    "User:{task_assignment}I will give a question and several context texts about the question. Based on the given contexts, give a informative answer to the question. Your answer must not using any additional knowledge that is not mentioned in the given contexts. If the context is not sufficient to answer the question, please answer it with 'Not Provided'\n\n"
    'QUESTION:\n{question}\n\n'
    'CONTEXTS:\n{context}\n\n'
    'ANSWER: \n [/INST]'
)
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


# ---- tokenizer and the chat format the authors trained with ----

class Tokenizer:
    """A sentencepiece model (Llama-2's tokenizer.model or the tiny world's). Special tokens are ids."""

    def __init__(self, path):
        if os.path.isdir(path):
            path = os.path.join(path, "tokenizer.model")
        if not os.path.isfile(path):
            raise DataError(f"{path}: missing; the model directory needs the sentencepiece tokenizer.model "
                            "that ships with Llama-2 (or that `python train.py --stage 0` writes)")
        self.path = path
        self.sp = spm.SentencePieceProcessor(model_file=path)
        self.vocab_size, self.bos_id, self.eos_id = self.sp.vocab_size(), self.sp.bos_id(), self.sp.eos_id()
        self.pad_id = max(self.sp.pad_id(), 0)  # padding is masked out of attention and loss anyway

    def encode(self, text: str, bos=True, eos=False) -> list:
        return [self.bos_id] * bos + self.sp.encode(text) + [self.eos_id] * eos

    def decode(self, ids) -> str:
        return self.sp.decode(list(ids))

    def check_vocab(self, model_vocab_size: int):
        if self.vocab_size != model_vocab_size:
            raise DataError(f"{self.path}: tokenizer has {self.vocab_size} tokens but the model's config.json "
                            f"says vocab_size {model_vocab_size}; use the tokenizer.model that belongs to this model")


def encode_chat(tok: Tokenizer, instruction: str, output: str = None, wrap=True):
    """LLaMA-Factory's llama2 template, as the authors trained: `<s>[INST] {instruction} [/INST] {output} </s>`.
    Returns (input_ids, labels); labels are -100 on every prompt token, so the loss is on output + EOS.
    wrap=False takes an instruction that is already a whole chat prompt (the evaluation prompt)."""
    prompt = tok.encode("[INST] " + instruction + " [/INST]" if wrap else instruction, bos=True)
    response = [] if output is None else tok.encode(output, bos=False, eos=True)
    return prompt + response, [-100] * len(prompt) + response


def eval_prompt(question: str, context: str, task_prefix: bool) -> str:
    """The evaluation prompt; TASK_ASSIGNMENT_PREFIX only for fine-tuned models, as the authors did."""
    return fill(LLAMA2_CHAT_EVAL, task_assignment=TASK_ASSIGNMENT_PREFIX if task_prefix else "",
                question=question, context=context)


# ---- raw files ----

def _load_json(path, what):
    if not os.path.isfile(path):
        raise DataError(f"{path}: missing; download {what} (see README) or run without --asqa/--hotpot "
                        "for the tiny world")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e}); expected {what}") from None


def _need(obj, field, path, where):
    if not isinstance(obj, dict) or field not in obj:
        raise DataError(f"{path}: {where} has no field {field!r}; this is not the expected file")
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
    records = _need(data, "train", asqa_path, "the top-level object")
    st = dict.fromkeys(["records", "records_kept", "pairs_no_context", "pairs_no_wikipage", "pairs_no_answer",
                        "permutations", "dropped_by_filter", "rows_train", "rows_test"], 0)
    rows = []
    for asqa_id, rec in records.items():
        st["records"] += 1
        by_context = {}  # keyed by context: a later pair replaces an earlier one, as in the authors' code
        for qa in _need(rec, "qa_pairs", asqa_path, f"train[{asqa_id!r}]"):
            for field in ("context", "question", "short_answers"):
                _need(qa, field, asqa_path, f"a qa_pair of train[{asqa_id!r}]")
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
    return "\n".join("".join(sentences) for _title, sentences in item["context"])


def load_hotpot(hotpot_path):
    items = _load_json(hotpot_path, "hotpot_train_v1.1.json")
    if not isinstance(items, list):
        raise DataError(f"{hotpot_path}: expected a JSON list of HotpotQA items")
    for k, item in enumerate(items):
        for field in ("_id", "question", "answer", "context"):
            _need(item, field, hotpot_path, f"item {k}")
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
        out.append(dict(id=item["_id"], prompt=prompt, context=context, output=output,
                        answer=item["answer"], instruction=p["instruction"], slot=p["slot"]))
    return out


def _read_targets(path, ids):
    targets = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                rec = json.loads(line)
                for field in ("_id", "output"):
                    _need(rec, field, path, f"line {n}")
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
        out.append(dict(id=item["_id"], prompt=instruction_prompt(TASK_QA, item["question"], context),
                        context=context, output=item["answer"]))
    return out


def base_records(corpus_path):
    """Stage 0 (tiny world only): the base model's instruction data, one JSON object per line, either a
    question answered from passages, {"question", "answer", "passages": [[title or null, text]], "template":
    "eval" | "qa", optional "prefix" (eval: with TASK_ASSIGNMENT_PREFIX), "request" and "slot" (qa: a format
    request in slot I{slot})}, or a general skill such as copying, {"instruction", "output"}. The answer is
    always in the passages, so the base learns to answer, never to refuse: the paper's diagnosis."""
    out = []
    with open(corpus_path) as f:
        for n, line in enumerate(f):
            qa = json.loads(line)
            if "instruction" in qa:
                out.append(dict(id=f"base{n}", prompt=qa["instruction"], context="", output=qa["output"]))
                continue
            context = "\n".join(fill(ASQA_CONTEXT_HEADER, wikipage=title, context=text) if title else text
                                 for title, text in qa["passages"])
            if qa["template"] == "eval":
                prompt = eval_prompt(qa["question"], context, task_prefix=qa.get("prefix", False))
                out.append(dict(id=f"base{n}", prompt=prompt, context=context, output=qa["answer"], format="raw"))
            else:
                prompt = instruction_prompt(TASK_QA, qa["question"], context, qa.get("request", ""), qa.get("slot", 0))
                out.append(dict(id=f"base{n}", prompt=prompt, context=context, output=qa["answer"]))
    return out


# ---- tokenisation for training ----

def tokenize_records(tok, records, cutoff_len=1024):
    """encode_chat per record; a prompt too long for cutoff_len loses the end of its context (never the
    answer). Returns (samples [(input_ids, labels)], number of records dropped because even an empty
    context leaves no room for the whole answer)."""
    samples, dropped = [], 0
    for rec in records:
        wrap = rec.get("format") != "raw"
        ids, labels = encode_chat(tok, rec["prompt"], rec["output"], wrap)
        ctx_ids = None
        while len(ids) > cutoff_len:
            if ctx_ids is None:
                ctx_ids = tok.encode(rec["context"], bos=False)
            keep = len(ctx_ids) - (len(ids) - cutoff_len)
            if keep <= 0:
                break
            ctx_ids = ctx_ids[:keep]
            head, _, tail = rec["prompt"].rpartition(rec["context"])
            ids, labels = encode_chat(tok, head + tok.decode(ctx_ids) + tail, rec["output"], wrap)
        if len(ids) > cutoff_len:
            dropped += 1
        else:
            samples.append((ids, labels))
    return samples, dropped


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
                extra = f", {tokenize_records(tok, recs, args.cutoff_len)[1]} dropped at cutoff {args.cutoff_len}"
            print(f"{name}.jsonl: {len(recs)} records{extra}")
    except DataError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
