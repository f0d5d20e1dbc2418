"""The tiny world: a seeded fictional world written in the raw formats of the paper's datasets.

    python tinyworld.py --out data/tiny      # ASQA.json, hotpot_train_v1.1.json, base_corpus.jsonl, world_words.txt

No Llama-2 weights, ASQA or HotpotQA can be downloaded everywhere, so the demo runs on this instead:
- Ambiguous names shared by 2-4 entities of different kinds (a city, a band, a painter, a ship), one
  passage each. ASQA.json holds one record per name, one qa_pair per entity, so a sibling question is
  topically close (same name, another entity) exactly as in ASQA: the passage about the city Zorvan cannot
  answer "When was the band Zorvan formed?", but it invites the hallucination "Zorvan was formed in 1516."
- hotpot_train_v1.1.json: questions over 10 paragraphs, one holding the answer and 9 distractors.
- base_corpus.jsonl: stage 0's data, the tiny base model's "instruction tuning": answerable questions (the
  answer is always in the passage, so the base learns the answer bias the paper blames), over one passage,
  over all passages of an ambiguous name, and over ten paragraphs with format requests of its own pool;
  plus copying text. None of it is a US-Tuning task (no Sufficient/Insufficient, no 'Not Provided', no
  CHECKING, no stage-2 instruction).
- world_words.txt: the names and years, which stage 0's tokenizer keeps as one piece each.
One pool of 160 names serves every part, with facts drawn afresh every time, so every name is a frequent
token but no benchmark fact was ever seen: the base must read the passage. Answers are
sentences that restate the passage's fact ("Zorvan was founded in 1516."); ASQA short_answers stay bare
values ("1516") as in the real data, and HotpotQA answers are those sentences. Design measurements are in
the README (tiny world).

This module writes files and nothing else: data.py reads them exactly as it reads the real ones.
"""
import argparse
import json
import os
import random
import re

import data

DATA = "data/tiny"  # the raw files train.py and eval.py read by default (written here when missing)
BASE = "tiny/base"  # the shipped stage-0 base model (HF layout); `python train.py --stage 0` rebuilds it

ONSETS, VOWELS, CODAS = "bdfgklmnprstvz", "aeiou", ["", "", "n", "r", "l", "s"]


def make_names(rng, count, avoid=""):
    """`count` distinct made-up names, none of which occurs inside `avoid` (the tokenizer keeps each name one
    piece wherever it appears, so a name must not hide inside another word). Sorted before the shuffle: a
    set's order changes from process to process, the world must not."""
    names = set()
    while len(names) < count:
        syllables = rng.randint(2, 3)
        name = ("".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(syllables)) + rng.choice(CODAS)).capitalize()
        if name not in avoid:
            names.add(name)
    names = sorted(names)
    rng.shuffle(names)
    return names


def make_entity(rng, name, kind):
    """An entity: its passage sentences and one (question, answer sentence, short answer) per fact."""
    sentences, facts = [f"{name} is a {kind}."], []
    for sentence, question, pool in KINDS[kind]:
        value = rng.choice(pool)
        said = sentence.replace("{n}", name).replace("{v}", value)
        sentences.append(said)
        facts.append((question.replace("{n}", name), said, value))
    return dict(name=name, kind=kind, title=f"{name} ({kind})", sentences=sentences, facts=facts)


def asqa_record(rng, name):
    kinds = rng.sample(sorted(KINDS), rng.randint(2, 4))
    entities = [make_entity(rng, name, k) for k in kinds]
    years = [e["facts"][0][2] for e in entities]
    if len(set(years)) < len(years):  # same year in two passages: the paper's filter would drop the rows
        return asqa_record(rng, name)
    pairs = []
    for e in entities:
        question, _sentence, value = rng.choice(e["facts"])
        pairs.append(dict(context=" ".join(e["sentences"]), question=question, short_answers=[value],
                          wikipage=e["title"]))
    return dict(ambiguous_question=f"What do we know about {name}?", qa_pairs=pairs,
                wikipages=[dict(title=e["title"], url=f"https://tiny.world/{e['title'].replace(' ', '_')}")
                           for e in entities],
                annotations=[dict(knowledge=[], long_answer=" ".join(p["context"] for p in pairs))],
                sample_id=None)


def hotpot_item(rng, k, gold, distractors):
    question, answer, _value = rng.choice(gold["facts"])
    paragraphs = [gold] + distractors
    rng.shuffle(paragraphs)
    # HotpotQA sentences carry their leading space; data.py joins them with "".
    context = [[p["title"], [p["sentences"][0]] + [" " + s for s in p["sentences"][1:]]] for p in paragraphs]
    fact_index = 1 + [f[0] for f in gold["facts"]].index(question)
    return {"_id": f"tiny{k:05d}", "question": question, "answer": answer,
            "supporting_facts": [[gold["title"], fact_index]], "context": context, "type": "bridge", "level": "easy"}


# Stage 0's format requests: a pool of its own, so that the base follows a request sentence in a prompt the
# way a chat model does, while the stage-2 pool (data.INSTRUCTIONS) stays unseen until stage 2.
FORMAT_REQUESTS = [
    ("Put the answer between angle brackets.", lambda a: f"<{a}>"),
    ("Start the answer with \"Answer:\".", lambda a: f"Answer: {a}"),
    ("Write the answer in italics with underscores.", lambda a: f"_{a}_"),
    ("Put the answer in curly braces.", lambda a: "{" + a + "}"),
    ("Begin the answer with the word \"Well\".", lambda a: f"Well, {a}"),
    ("Put an arrow before the answer.", lambda a: f"=> {a}"),
    ("End the answer with the words \"as the context says\".", lambda a: a.rstrip(".") + " as the context says."),
    ("Give the answer three times, separated by a bar.", lambda a: f"{a} | {a} | {a}"),
    ("Put the answer after a star and a space.", lambda a: f"* {a}"),
    ("Join the words of the answer with underscores.", lambda a: "_".join(a.split())),
]
# Stage 0's copying task: the general skill behind reading a prompt back (no CHECKING, no marks). Its loss
# covers every copied token, so it is what first forms the model's copying (induction) heads.
COPY_REQUEST = "Repeat the text below, one sentence per line."


# kind -> its two facts: (passage sentence, question, value pool); "{n}" is the name, "{v}" the value. The
# shipped base copies every year out of the passage but guesses the eight-word values from their prior (23%
# right, chance 12.5%); made-up single-token values, 50 per kind, fared worse (3 of 182), so these stay (README).
YEARS = [str(y) for y in range(1800, 2000)]
KINDS = {
    "city": [("{n} was founded in {v}.", "When was the city {n} founded?", YEARS),
             ("{n} lies in {v}.", "Where does the city {n} lie?",
              ["Keltia", "Dorvia", "Samaro", "Ulmen", "Brisca", "Tovana", "Pelagon", "Ristor"])],
    "band": [("{n} was formed in {v}.", "When was the band {n} formed?", YEARS),
             ("{n} plays {v} music.", "What music does the band {n} play?",
              ["jazz", "rock", "folk", "punk", "soul", "blues", "metal", "disco"])],
    "painter": [("{n} was born in {v}.", "When was the painter {n} born?", YEARS),
                ("{n} paints {v}.", "What does the painter {n} paint?",
                 ["horses", "rivers", "faces", "ships", "flowers", "mountains", "storms", "birds"])],
    "ship": [("{n} was launched in {v}.", "When was the ship {n} launched?", YEARS),
             ("{n} sails from {v}.", "Where does the ship {n} sail from?",
              ["Harlow", "Meriden", "Castol", "Vennby", "Ostrak", "Lunmoor", "Pirano", "Weyford"])],
}


# Stage 0's second phase ("polish", train.py --polish-steps) asks the second fact (the eight-word value) this
# often, the year the rest: after the first phase the base copied every year but guessed the values from their
# prior (v9, README); a probe from that base on questions over one passage, three quarters of them about the
# value, taught the values (72% after 1000 steps at lr 5e-4) and kept every year.
VALUE_SHARE = 0.75
COPY_SHARE = 0.05


def _sentences(text):
    """A prompt's sentences, its slots ({I0}, {task_assignment}) and its QUESTION/CONTEXTS/ANSWER fields dropped."""
    text = re.sub(r"\{I\d\}|User:\{task_assignment\}|\n\nQUESTION:.*", "", text, flags=re.S)
    return [s.strip() + "." for s in text.replace("\n", " ").split(".") if s.strip()]


# Stage 0's English to copy: the prompt sentences it already reads (system prompt, the evaluation prompt, TASK_QA)
# and its own format requests, never one that says 'Not Provided' or judges sufficiency. Copied a few at a time,
# one per line, they give the base the skill a CHECKING review rests on (reading a prompt's sentences back)
# without the review itself.
COPY_ENGLISH = sorted({s for text in (data.EVAL_SYSTEM, data.EVAL_USER, data.TASK_QA, *(r for r, _ in FORMAT_REQUESTS))
                       for s in _sentences(text) if "sufficient" not in s and "Provided" not in s})


# Stage 0 keeps only this share of its harder records (several passages, ten paragraphs, copying), drawn at
# random: with every one of them (about half the corpus, most of its answer tokens) the base never learned to
# copy a value out of a passage in 4000 steps; with a quarter it does within 600 (README, tiny world).
HARD_SHARE = 0.25


def with_request(rng, rec, pool=FORMAT_REQUESTS):
    """A TASK_QA record given a format request of `pool` in a random slot, its answer formatted so."""
    request, apply = rng.choice(pool)
    rec.update(answer=apply(rec["answer"]), request=request, slot=rng.randrange(5))
    return rec


def corpus_records(rng, names, count):
    """Stage 0's instruction data: `count` draws of a name from `names` (the benchmark's names too), each with
    1-4 entities of different kinds (ambiguous, as in ASQA) whose facts are drawn afresh every time, so a
    fact is never worth remembering: the base must read the passage. Every question is answerable. Per draw:
    - one question per entity over its own passage (the evaluation prompt, or TASK_QA),
    and, each kept with probability HARD_SHARE,
    - with several entities: a question over all the name's passages, so the kind in the question decides,
    - half the time, a question over ten paragraphs (nine about other names), as in HotpotQA, in TASK_QA;
      half of those carry a format request from FORMAT_REQUESTS in one of TASK_QA's five slots,
    - a copying task over one passage about another name."""
    out = []
    for _ in range(count):
        name = rng.choice(names)
        group = [make_entity(rng, name, k) for k in rng.sample(sorted(KINDS), rng.choice([1, 1, 2, 3, 4]))]
        others = [make_entity(rng, n, rng.choice(sorted(KINDS))) for n in rng.sample(names, 10) if n != name][:9]
        asked = [(e, [e]) for e in group] + ([(rng.choice(group), rng.sample(group, len(group)))] if len(group) > 1 else [])
        hard = []
        for e, shown in asked:
            question, answer, _value = rng.choice(e["facts"])
            template = rng.choice(["eval", "qa"])
            (out if len(shown) == 1 else hard).append(dict(
                question=question, answer=answer, template=template,
                passages=[[g["title"], " ".join(g["sentences"])] for g in shown],
                **({"prefix": rng.random() < 0.5} if template == "eval" else {})))
        if rng.random() < 0.5:
            e = rng.choice(group)
            question, answer, _value = rng.choice(e["facts"])
            paragraphs = [e] + others
            rng.shuffle(paragraphs)
            rec = dict(question=question, answer=answer, template="qa",
                       passages=[[None, " ".join(p["sentences"])] for p in paragraphs])
            hard.append(with_request(rng, rec) if rng.random() < 0.5 else rec)
        sentences = others[0]["sentences"]  # one passage: over four, copying stayed at chance and slowed the rest
        hard.append(dict(instruction=COPY_REQUEST + "\n\n" + " ".join(sentences), output="\n".join(sentences)))
        out += [r for r in hard if rng.random() < HARD_SHARE]
    return out


def polish_records(rng, names, count):
    """Stage 0's second phase ("phase": 2): `count` draws of polish_record."""
    return [polish_record(rng, names, 2) for _ in range(count)]


def polish_record(rng, names, phase):
    """A question over one passage, as in corpus_records, the value asked with probability VALUE_SHARE; or,
    with probability COPY_SHARE instead, a copy of 2-5 sentences of COPY_ENGLISH; marked "phase": `phase`."""
    if rng.random() < COPY_SHARE:
        sentences = rng.sample(COPY_ENGLISH, rng.randint(2, 5))
        return dict(instruction=COPY_REQUEST + "\n\n" + " ".join(sentences), output="\n".join(sentences), phase=phase)
    e = make_entity(rng, rng.choice(names), rng.choice(sorted(KINDS)))
    question, answer, _value = e["facts"][rng.random() < VALUE_SHARE]
    template = rng.choice(["eval", "qa"])
    return dict(question=question, answer=answer, template=template, passages=[[e["title"], " ".join(e["sentences"])]],
                **({"prefix": rng.random() < 0.5} if template == "eval" else {}), phase=phase)


# Copies by content (train.py --copy-steps; `python tinyworld.py --copies N`, none by default, so the shipped
# base's data stays as it was). Stage 2's CHECKING review must write, after requirement sentence k, the sentence
# that follows sentence k in the prompt: a copy addressed by content, what induction heads give a real chat
# model. The shipped base has none, and neither questions nor sentence listings formed one (docs/tiny-world-log.md, "Why
# the slot stays at 0"). Runs of 10-40 random words copied right after the request formed it from scratch within a
# few hundred to 2400 steps when they came alone, and the main phase's questions erased it unless such copies
# stayed in its mix. So: a copy phase of runs alone ("phase": 0), then runs in the later phases, a third of
# them right before the reply, a third with 1-10 world paragraphs between the run and the reply, and a third
# listings of random sentences one per line (the line start after a sentence is what the slot asks for).
# Their words: every word of the world's fixed text (prompts, requests, sentence patterns, values) but the
# method's own: none holds these (so "Sufficient", "Insufficient" and "sufficiently" are all left out).
# Measured (docs/tiny-world-log.md, v27-v28): this gives a base that copies by content (48% of new runs, v12 1%) and
# answers every known question, but its listings' line starts, the slot's shape, stay at chance, and stage 2's
# slot at 0; line starts formed only from listings alone, and carried to the prompt's own sentences only from
# listings of them in a shuffled order. So a listing phase ("phase": 3, train.py --list-steps) follows the copy
# phase: listings alone, half of random sentences, half of COPY_ENGLISH's sentences in a random order; and the
# later phases keep both listings in their mix. Measured (docs/tiny-world-log.md, v29): its base lists shuffled prompt
# English with 95% of line starts right, and a 20-epoch stage 2 on it writes the asked instruction in 78 of 100 reviews.
METHOD_WORDS = ("sufficient", "provided", "checking", "fulfilled")
FIRST_PART_REQUEST = "Repeat the first part of the text below, one sentence per line."
# per draw, the chance of one random copy in each phase, in the order train.py runs them: copy, listing, main,
# polish (v27 drew (1.0, 0.675, 0.1) for phases 0, 1, 2 and no listing phase)
RANDOM_COPIES = ((0, 1.0), (3, 0.75), (1, 1.0), (2, 0.25))


def copy_words():
    """The words random copies are drawn from (names left out: each is a lone '▁' piece and the name)."""
    words = set(re.findall(r"[A-Za-z]+", fixed_text()))
    return sorted(w for w in words if not any(m in w.lower() for m in METHOD_WORDS))


def random_copy(rng, words, names, phase, kind=None, after=None):
    """One copy record. `kind` 0: a run of 10-40 random words; 1: a run with `after` (1-10) world paragraphs
    after it; 2: a listing of 2-6 random sentences of 3-8 words, one per line in the reply, with `after` (0-10)
    paragraphs after it; 3: a listing as 2, of 2-6 sentences of COPY_ENGLISH in a random order. Phase 0 draws
    runs only, phase 3 listings only (2 or 3); the others draw any kind, and `after`."""
    if kind is None:
        kind = 0 if phase == 0 else rng.choice((2, 3)) if phase == 3 else rng.randrange(4)
    if kind < 2:
        text = " ".join(rng.choice(words) for _ in range(rng.randint(10, 40)))
        lines = [text]
    elif kind == 2:
        lines = []
        for _ in range(rng.randint(2, 6)):
            w = [rng.choice(words) for _ in range(rng.randint(3, 8))]
            lines.append(" ".join([w[0][0].upper() + w[0][1:]] + w[1:]) + ".")
        text = " ".join(lines)
    else:
        lines = rng.sample(COPY_ENGLISH, rng.randint(2, 6))
        text = " ".join(lines)
    if after is None:
        after = rng.randint(1, 10) if kind == 1 else rng.randint(0, 10) if kind >= 2 else 0
    return dict(instruction=copy_request(rng, names, text, after), output="\n".join(lines), phase=phase)


def copy_request(rng, names, text, after):
    """The prompt of a copy of `text`: the request, the text, then `after` world paragraphs about names drawn
    from `names` (with them, the request asks for the first part)."""
    paragraphs = [" ".join(make_entity(rng, n, rng.choice(sorted(KINDS)))["sentences"]) for n in rng.sample(names, after)]
    request = FIRST_PART_REQUEST if paragraphs else COPY_REQUEST
    return request + "\n\n" + text + ("\n\n" + "\n".join(paragraphs) if paragraphs else "")


def random_copy_records(rng, names, count):
    """`count` draws, each adding a random copy to each phase with its chance in RANDOM_COPIES."""
    words, out = copy_words(), []
    for _ in range(count):
        out += [random_copy(rng, words, names, phase) for phase, p in RANDOM_COPIES if rng.random() < p]
    return out


# Request records (`python tinyworld.py --requests N`, none by default, so the shipped base's data stays as it
# was): main-phase questions in TASK_QA, each with a format request of stage 0's own pool (FORMAT_REQUESTS) in
# one of its five slots, over one passage (three in four) or over ten paragraphs as in HotpotQA (the asked
# entity and nine about other names, in a random order). Measured (docs/tiny-world-log.md, v30-v31): v29's corpus held
# 500 requests, all over ten paragraphs, among its 29752 main-phase records, and its base followed none of them
# (tools/format_probe.py: wrappers applied 0 of 66 over one passage, 0 of 64 over ten), so stage 2 had to teach
# the whole skill of reading a request in the prompt's head and applying it. v30 added 8000 questions over
# several passages (half over all passages of an ambiguous name, half over ten paragraphs, half of each with a
# request): its base applied its requests (36 of 66, 44 of 64) but stopped copying years out of any passage (0
# of 177; it wrote "1818"), as HARD_SHARE's note says too many such records do.
def request_records(rng, names, count):
    return [request_record(rng, names) for _ in range(count)]


def request_record(rng, names, pool=FORMAT_REQUESTS):
    """One TASK_QA question with a request of `pool`, over the asked entity's passage alone (3 in 4) or ten
    paragraphs."""
    name = rng.choice(names)
    asked = make_entity(rng, name, rng.choice(sorted(KINDS)))
    shown = [asked]
    if rng.random() < 0.25:
        others = rng.sample([n for n in names if n != name], 9)
        shown += [make_entity(rng, n, rng.choice(sorted(KINDS))) for n in others]
        rng.shuffle(shown)
    question, answer, _value = rng.choice(asked["facts"])
    rec = with_request(rng, dict(question=question, answer=answer, template="qa"), pool)
    return dict(rec, passages=[[None, " ".join(e["sentences"])] for e in shown])


# The request phase (`python tinyworld.py --request-phase N`, train.py --request-steps; none by default):
# "phase": 4 records, trained after the polish phase, when the year copy has formed. Adding requests to the
# main phase instead (v30, v31) stopped it forming (docs/tiny-world-log.md: known 51.4, every year wrong); 300 steps of
# requests after v29's polish phase kept it (known 100.0) and taught v29's base to apply them (39 of 66). Half the
# records are polish-phase questions, so the facts' copying stays in the mix; half are request records over
# REQUEST_PHASE_POOL: stage 0's own pool and CHAT_REQUESTS.
# CHAT_REQUESTS asks for the formats of stage 2's pool (data.INSTRUCTIONS, one each, in its order) in other
# words. A chat model knows how to write an answer in capitals or wrap it in quotes before US-Tuning starts;
# what stage 2 must teach is its pool's sentences, its prompt and the CHECKING review. No sentence here is one
# of data.INSTRUCTIONS (a test checks it). Measured (docs/tiny-world-log.md, v32): with 600 steps of these records v29's
# base applies its own pool's requests (48 of 66), stage 2's sentences seldom (8 of 50, zero-shot), and a 20-epoch
# stage 2 on it passes 30 of 100 held-out items, well-formed 44 (without CHAT_REQUESTS, 300 steps: 23 and 44).
# Listings in this mix (a quarter of the draws, v33) kept more of the other skills but did worse (28 and 29).
CHAT_REQUESTS = [(sentence, op) for sentence, (_, op, _) in zip([
    "Use only capital letters for the answer.",
    "Use only small letters for the answer.",
    "Put the answer inside double quotation marks.",
    "Put square brackets around the answer.",
    "Put round brackets around the answer.",
    "Open the answer with the words \"The answer is\".",
    "Open the answer with the word \"Sure\".",
    "Close the answer with an exclamation mark.",
    "Close the answer with a full stop.",
    "Make the answer bold: two asterisks on each side.",
    "Make the answer a list item: a hyphen and a space before it.",
    "Say the answer two times, with a semicolon between them.",
    "Add the sentence \"I hope this helps.\" after the answer.",
    "Put hyphens between the words of the answer, not spaces.",
], data.INSTRUCTIONS, strict=True)]
REQUEST_PHASE_POOL = FORMAT_REQUESTS + CHAT_REQUESTS


def request_phase_records(rng, names, count):
    """`count` draws for the request phase, each a polish-phase record (half) or a request record of
    REQUEST_PHASE_POOL (half), marked "phase": 4."""
    return [polish_record(rng, names, 4) if rng.random() < 0.5 else
            dict(request_record(rng, names, REQUEST_PHASE_POOL), phase=4) for _ in range(count)]


# Case drills (`python tinyworld.py --case-drills N`, more "phase": 4 records for train.py --request-steps; none by
# default). Capitals and small letters are two of stage 2's formats, and the only two a wrapper cannot make: the
# tokenizer keeps every name whole ("Mevenel", one piece), so "MEVENEL" is seven letter pieces the base must have
# learnt to spell; a chat model spells before US-Tuning starts. Per draw, 3 in 4: a world text (one sentence of
# an entity's passage, or all of it) to rewrite in capitals or small letters (CASE_REQUESTS, words of its own);
# 1 in 4: a question over a passage with the two CHAT_REQUESTS that ask for the same (CHAT_CASE_REQUESTS).
# Measured (docs/tiny-world-log.md, v34: 4000 drills, 900 request steps; tools/format_probe.py --case): the base writes
# its reply in the asked case (58 of 80 held-out items; v32 15) but misspells the names (the gold answer so cased:
# 0 of 80, as v32), and an 8-epoch stage 2 on it passed 86 (v32 87), well-formed 74 (v32 80).
CASE_REQUESTS = [("Write the text below in capital letters.", str.upper),
                 ("Write the text below in small letters.", str.lower)]
CHAT_CASE_REQUESTS = CHAT_REQUESTS[:2]  # capitals, small letters: data.INSTRUCTIONS' first two, in other words


def case_drill_records(rng, names, count):
    out = []
    for _ in range(count):
        if rng.random() < 0.25:
            out.append(dict(request_record(rng, names, CHAT_CASE_REQUESTS), phase=4))
            continue
        e = make_entity(rng, rng.choice(names), rng.choice(sorted(KINDS)))
        text = rng.choice(e["sentences"]) if rng.random() < 0.7 else " ".join(e["sentences"])
        request, op = rng.choice(CASE_REQUESTS)
        out.append(dict(instruction=f"{request}\n\n{text}", output=op(text), phase=4))
    return out


def draw_hotpot_items(rng, pool, ids):
    """One HotpotQA item per id: a gold paragraph about one name of the pool, nine others as distractors."""
    items = []
    for k in ids:
        gold, *distractors = (make_entity(rng, n, rng.choice(sorted(KINDS))) for n in rng.sample(pool, 10))
        items.append(hotpot_item(rng, k, gold, distractors))
    return items


# Stage 2 trains on the first 300 items (train.py's --n-items); eval.py holds out 300-399 (--instruction-start).
TRAIN_ITEMS, MORE_ITEMS_STREAM = 300, 1000


def more_hotpot(seed, hotpot, pool, n):
    """hotpot_more.json for train.py --stage 2 --n-items up to 300 + n: `hotpot`'s training items, then n items
    drawn as the world draws its own (same pool) from the stream seed + 1000. The held-out items are not in it."""
    new = draw_hotpot_items(random.Random(seed + MORE_ITEMS_STREAM), pool, range(len(hotpot), len(hotpot) + n))
    return hotpot[:TRAIN_ITEMS] + new


def generate(seed=0, names=160, asqa_names=120, hotpot_items=400, corpus_draws=8000, polish_draws=8000, avoid="",
             copies=0, requests=0, request_phase=0, case_drills=0):
    """Return (asqa, hotpot, corpus, names) for one seed; the same seed always gives the same world. One pool
    of `names` serves every part, each draw with facts drawn afresh: ASQA gives `asqa_names` of them one
    record each, a HotpotQA item asks about one and uses nine others as distractors, stage 0 draws from all.
    So every name is a frequent token, yet no fact is worth remembering: the base must read the passage.
    `copies` draws of random copies (random_copy_records), `requests` request records (request_records) and
    `request_phase` request-phase records (request_phase_records) and `case_drills` (case_drill_records) come
    last, each from a stream of its own (seed + 1 to seed + 4): the other records are the same with or without
    them."""
    rng = random.Random(seed)
    pool = make_names(rng, names, avoid)
    train = {}
    for name in pool[:asqa_names]:
        rec = asqa_record(rng, name)
        rec["sample_id"] = f"{rng.getrandbits(62):016x}"
        train[rec["sample_id"]] = rec
    asqa = {"train": train, "dev": {}}
    hotpot = draw_hotpot_items(rng, pool, range(hotpot_items))
    corpus = corpus_records(rng, pool, corpus_draws) + polish_records(rng, pool, polish_draws)
    corpus += random_copy_records(random.Random(seed + 1), pool, copies)
    corpus += request_records(random.Random(seed + 2), pool, requests)
    corpus += request_phase_records(random.Random(seed + 3), pool, request_phase)
    return asqa, hotpot, corpus + case_drill_records(random.Random(seed + 4), pool, case_drills), pool


def fixed_text():
    """Every text of the world that is not a name: the prompts, the requests, the sentence patterns, values."""
    prompts = [*data.PROMPTS, data.ASQA_CONTEXT_HEADER, COPY_REQUEST] + [s for s, _, _ in data.INSTRUCTIONS] + [
        s for s, _ in FORMAT_REQUESTS]
    world = [" ".join([s, q] + pool) for facts in KINDS.values() for s, q, pool in facts if pool is not YEARS]
    return "\n".join(prompts + world)


def write(out, seed=0, more_items=0, **sizes):
    """Write ASQA.json, hotpot_train_v1.1.json, base_corpus.jsonl (stage 0's data) and world_words.txt (the
    names and years, which stage 0's tokenizer keeps whole) into `out`; with more_items, hotpot_more.json too."""
    asqa, hotpot, corpus, names = generate(seed, avoid=fixed_text(), **sizes)
    os.makedirs(out, exist_ok=True)
    files = {"ASQA.json": json.dumps(asqa, indent=1), "hotpot_train_v1.1.json": json.dumps(hotpot, indent=1),
             "base_corpus.jsonl": "".join(json.dumps(r) + "\n" for r in corpus),
             "world_words.txt": "".join(w + "\n" for w in names + YEARS)}
    if more_items:
        files["hotpot_more.json"] = json.dumps(more_hotpot(seed, hotpot, names, more_items), indent=1)
    for name, text in files.items():
        with open(os.path.join(out, name + ".tmp"), "w") as f:
            f.write(text)
        os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name))
    return {name: os.path.join(out, name) for name in files}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DATA, help="directory to write the four files to (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="the world's seed (default: %(default)s)")
    ap.add_argument("--copies", type=int, default=0, help="draws of random copies for train.py --copy-steps "
                    "and --list-steps, appended to base_corpus.jsonl (see RANDOM_COPIES; default: %(default)s, "
                    "none, as for the shipped base)")
    ap.add_argument("--requests", type=int, default=0, help="main-phase questions with a format request of "
                    "stage 0's own pool, over one passage or ten paragraphs (see request_records; default: "
                    "%(default)s, none, as for the shipped base)")
    ap.add_argument("--request-phase", type=int, default=0, help="draws for train.py --request-steps: \"phase\": 4 "
                    "records, half polish-phase questions, half questions with a request of stage 0's pool or of "
                    "CHAT_REQUESTS (see request_phase_records; default: %(default)s, none, as for the shipped base)")
    ap.add_argument("--case-drills", type=int, default=0, help="more draws for train.py --request-steps: "
                    "\"phase\": 4 records that rewrite a world text in capitals or small letters, or ask a question "
                    "with the CHAT_REQUESTS for them (see case_drill_records; default: %(default)s, none, as for the "
                    "shipped base)")
    ap.add_argument("--more-items", type=int, default=0, help="also write hotpot_more.json: the 300 stage-2 "
                    "training items and this many new ones drawn from a stream of their own, for train.py --stage 2 "
                    "--hotpot DIR/hotpot_more.json --n-items (up to 300 + N; eval.py's held-out items 300-399 are "
                    "not in it; see more_hotpot; default: %(default)s, no file)")
    args = ap.parse_args()
    for flag in ("copies", "requests", "request_phase", "case_drills", "more_items"):
        if getattr(args, flag) < 0:
            ap.error(f"--{flag.replace('_', '-')} must be >= 0, not {getattr(args, flag)}")
    for name, path in write(args.out, args.seed, copies=args.copies, requests=args.requests,
                            request_phase=args.request_phase, case_drills=args.case_drills,
                            more_items=args.more_items).items():
        print(f"wrote {path}")
