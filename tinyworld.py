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
docs/tiny-world-log.md.

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
# right, chance 12.5%); made-up single-token values, 50 per kind, fared worse (3 of 182), so these stay (docs/tiny-world-log.md).
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
# prior (v9, docs/tiny-world-log.md); a probe from that base on questions over one passage, three quarters of them about the
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
# copy a value out of a passage in 4000 steps; with a quarter it does within 600 (docs/tiny-world-log.md).
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


def draw_hotpot_items(rng, pool, ids):
    """One HotpotQA item per id: a gold paragraph about one name of the pool, nine others as distractors."""
    items = []
    for k in ids:
        gold, *distractors = (make_entity(rng, n, rng.choice(sorted(KINDS))) for n in rng.sample(pool, 10))
        items.append(hotpot_item(rng, k, gold, distractors))
    return items


def generate(seed=0, names=160, asqa_names=120, hotpot_items=400, corpus_draws=8000, polish_draws=8000, avoid=""):
    """Return (asqa, hotpot, corpus, names) for one seed; the same seed always gives the same world. One pool
    of `names` serves every part, each draw with facts drawn afresh: ASQA gives `asqa_names` of them one
    record each, a HotpotQA item asks about one and uses nine others as distractors, stage 0 draws from all.
    So every name is a frequent token, yet no fact is worth remembering: the base must read the passage."""
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
    return asqa, hotpot, corpus, pool


def fixed_text():
    """Every text of the world that is not a name: the prompts, the requests, the sentence patterns, values."""
    prompts = [*data.PROMPTS, data.ASQA_CONTEXT_HEADER, COPY_REQUEST] + [s for s, _, _ in data.INSTRUCTIONS] + [
        s for s, _ in FORMAT_REQUESTS]
    world = [" ".join([s, q] + pool) for facts in KINDS.values() for s, q, pool in facts if pool is not YEARS]
    return "\n".join(prompts + world)


def write(out, seed=0, **sizes):
    """Write ASQA.json, hotpot_train_v1.1.json, base_corpus.jsonl (stage 0's data) and world_words.txt (the
    names and years, which stage 0's tokenizer keeps whole) into `out`."""
    asqa, hotpot, corpus, names = generate(seed, avoid=fixed_text(), **sizes)
    os.makedirs(out, exist_ok=True)
    files = {"ASQA.json": json.dumps(asqa, indent=1), "hotpot_train_v1.1.json": json.dumps(hotpot, indent=1),
             "base_corpus.jsonl": "".join(json.dumps(r) + "\n" for r in corpus),
             "world_words.txt": "".join(w + "\n" for w in names + YEARS)}
    for name, text in files.items():
        with open(os.path.join(out, name + ".tmp"), "w") as f:
            f.write(text)
        os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name))
    return {name: os.path.join(out, name) for name in files}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DATA, help="directory to write the four files to (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="the world's seed: another seed gives other names and "
                    "facts (default: %(default)s)")
    args = ap.parse_args()
    for name, path in write(args.out, args.seed).items():
        print(f"wrote {path}")
