"""The shipped tiny-world base (tiny/base) stands in for Llama-2-chat: it loads, its tokenizer matches its
config, and it meets the paper's precondition on known questions (it reads the passage and answers)."""
import os

import pytest

import data
import eval as ev
import tinyworld
from generate import generate
from model import Llama

BASE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), tinyworld.BASE)


def test_shipped_base_loads_and_its_tokenizer_matches_its_config():
    model = Llama.from_pretrained(BASE)
    tok = data.Tokenizer(BASE)
    tok.check_vocab(model.args.vocab_size)
    assert (tok.bos_id, tok.eos_id) == (model.args.bos_token_id, model.args.eos_token_id)
    assert os.path.getsize(os.path.join(BASE, "model.safetensors")) <= 30 * 2**20


# The shipped base reads the passage: 86.5% known accuracy on the test split, every year and most of the
# eight-word values (README, tiny world); the precondition is >= 75%.
def test_shipped_base_answers_known_questions_from_the_passage_and_never_refuses(tmp_path):
    """The paper's preconditions on 50 test rows: known accuracy >= 75% (it reads the passage) and at most
    10% of unknown questions refused (it answers them anyway: the answer bias US-Tuning removes)."""
    model = Llama.from_pretrained(BASE)  # fp32, no autocast: the same greedy tokens on every machine
    tok = data.Tokenizer(BASE)
    files = tinyworld.write(str(tmp_path))  # the default world: the one the base was built beside
    rows = [r for r in data.build_benchmark(files["ASQA.json"]) if r["split"] == "test"][:50]
    prompts = [p for p in ev.model_prompts(tok, rows, [], prefix=False) if p[0] == "benchmark"]
    outputs = generate(model, [p[3] for p in prompts], 40, tok.eos_id, batch_size=25)
    verdicts = [(p[2], ev.judge(p[2], tok.decode(o), p[4])) for o, p in zip(outputs, prompts)]
    known = sum(v["known_ok_answer"] for kind, v in verdicts if kind == "known")
    refused = sum(v["refused_answer"] for kind, v in verdicts if kind == "unknown")
    print(f"known {known}/50, unknown refused {refused}/50")
    assert len(verdicts) == 100 and known >= 0.75 * 50 and refused <= 0.10 * 50, (known, refused)
