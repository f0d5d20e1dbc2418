"""The data of US-Tuning: every prompt string and the datasets built from raw ASQA / HotpotQA (tokenizer.py: the
tokenizer and chat templates, imported here).

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
import sys

import numpy as np

# the tokenizer and the chat templates live in tokenizer.py; they are data.X too, and DataError is one class
from tokenizer import (TEMPLATES, ChatTemplate, DataError, Tokenizer, _chat_template_file, _check_renders,  # noqa: F401
                       _json_file, _read_text, chat_template, encode_chat, read_chat_template, read_tokenizer_json)


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
         "an int from 0 to 4": lambda v: type(v) is int and 0 <= v <= 4,
         "1 or 2": lambda v: type(v) is int and v in (1, 2)}


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


# ---- the benchmark: known vs unknown questions over one passage (docs/method.md section 2) ----

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


# ---- stage 1: Cognition Assessment (docs/method.md section 3) ----

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


# ---- stage 2: causal instructions with a CHECKING review (docs/method.md section 4) ----

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
