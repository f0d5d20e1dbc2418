"""The tiny world: a seeded fictional world written in the raw formats of the paper's datasets.

    python tinyworld.py --out data/tiny      # ASQA.json, hotpot_train_v1.1.json, base_corpus.jsonl

No Llama-2 weights, ASQA or HotpotQA can be downloaded everywhere, so the demo runs on this instead:
- Ambiguous names shared by 2-4 entities of different kinds (a city, a band, a painter, a ship), one
  passage each. ASQA.json holds one record per name, one qa_pair per entity, so a sibling question is
  topically close (same name, another entity) exactly as in ASQA: the passage about the city Zorvan cannot
  answer "When was the band Zorvan formed?", but it invites the hallucination "Zorvan was formed in 1516."
- hotpot_train_v1.1.json: questions over 10 paragraphs, one holding the answer and 9 distractors.
- base_corpus.jsonl: stage 0's data, answerable questions about other names (the answer is always in the
  passage), so the base model learns the answer bias the paper blames on instruction tuning.
The three parts use disjoint names, so the base must read each passage: it cannot recall one. Answers are
sentences that restate the passage's fact ("Zorvan was founded in 1516."), which a 1.4M-parameter model
learns to copy far sooner than a bare value; ASQA short_answers stay bare values ("1516") as in the real
data, and HotpotQA answers are those sentences. Design measurements are in the README (tiny world).

This module writes files and nothing else: data.py reads them exactly as it reads the real ones.
"""
import argparse
import json
import os
import random

# kind -> its two facts: (passage sentence, question, value pool); "{n}" is the name, "{v}" the value.
YEARS = [str(y) for y in range(1100, 2000)]
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
ONSETS, VOWELS, CODAS = "bdfgklmnprstvz", "aeiou", ["", "", "n", "r", "l", "s"]


def make_names(rng, count):
    names = set()
    while len(names) < count:
        syllables = rng.randint(2, 3)
        name = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(syllables)) + rng.choice(CODAS)
        names.add(name.capitalize())
    return sorted(names, key=lambda _: rng.random())


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


def generate(seed=0, asqa_names=120, hotpot_items=400, corpus_names=4000):
    """Return (asqa, hotpot, corpus) for one seed; the same seed always gives the same world."""
    rng = random.Random(seed)
    names = make_names(rng, asqa_names + hotpot_items + corpus_names)
    asqa_pool, hotpot_pool, corpus_pool = (names[:asqa_names], names[asqa_names:asqa_names + hotpot_items],
                                           names[asqa_names + hotpot_items:])
    train = {}
    for k, name in enumerate(asqa_pool):
        rec = asqa_record(rng, name)
        rec["sample_id"] = f"{rng.getrandbits(62):016x}"
        train[rec["sample_id"]] = rec
    asqa = {"train": train, "dev": {}}
    hotpot_entities = [make_entity(rng, n, rng.choice(sorted(KINDS))) for n in hotpot_pool]
    hotpot = [hotpot_item(rng, k, e, rng.sample(hotpot_entities[:k] + hotpot_entities[k + 1:], 9))
              for k, e in enumerate(hotpot_entities)]
    corpus = []
    for name in corpus_pool:
        e = make_entity(rng, name, rng.choice(sorted(KINDS)))
        for question, answer, _value in e["facts"]:
            corpus.append(dict(question=question, context=" ".join(e["sentences"]), title=e["title"], answer=answer))
    return asqa, hotpot, corpus


def write(out, seed=0, **sizes):
    asqa, hotpot, corpus = generate(seed, **sizes)
    os.makedirs(out, exist_ok=True)
    files = {"ASQA.json": json.dumps(asqa, indent=1), "hotpot_train_v1.1.json": json.dumps(hotpot, indent=1),
             "base_corpus.jsonl": "".join(json.dumps(r) + "\n" for r in corpus)}
    for name, text in files.items():
        with open(os.path.join(out, name + ".tmp"), "w") as f:
            f.write(text)
        os.replace(os.path.join(out, name + ".tmp"), os.path.join(out, name))
    return {name: os.path.join(out, name) for name in files}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="data/tiny")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for name, path in write(args.out, args.seed).items():
        print(f"wrote {path}")
