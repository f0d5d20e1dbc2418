"""tools/read_probe.py scores the answer's first word and the rest at the right positions (teacher-forced)."""
import os
import re
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import data  # noqa: E402
import read_probe  # noqa: E402


class Oracle(torch.nn.Module):
    """Logits whose argmax at position i is token i + 1 of the input, except at the positions in `wrong`."""
    def __init__(self, vocab, wrong=()):
        super().__init__()
        self.vocab, self.wrong = vocab, set(wrong)

    def forward(self, ids):
        nxt = torch.cat([ids[:, 1:], ids[:, :1]], 1)
        for i in self.wrong:
            nxt[:, i] = (nxt[:, i] + 1) % self.vocab
        return torch.nn.functional.one_hot(nxt, self.vocab).float()


def test_probe_marks_the_name_and_the_rest_where_they_are():
    tok, template = data.Tokenizer(os.path.join(ROOT, "tiny", "base")), data.TEMPLATES["llama2"]
    prompt, answer = "Where does the ship Zopo sail from?", "Zopo sails from Harlow."
    ids, labels = data.encode_chat(tok, prompt, answer, template)
    at = [i for i, label in enumerate(labels) if label != -100]
    name = next(i for i in at if tok.decode([ids[i]]).strip())
    assert tok.decode([ids[name]]) == "Zopo"
    probe = lambda wrong: read_probe.probe(Oracle(tok.vocab_size, wrong), tok, template, prompt, answer, False)
    assert probe(())[:2] == (True, True)
    assert probe([name - 1])[:2] == (False, True) and probe([name - 1])[2] != "Zopo"
    assert probe([at[-1] - 1])[:2] == (True, False)  # the end-of-turn token counts as part of the rest
    assert probe([at[0] - 2])[:2] == (True, True)  # a prompt position does not count


def test_a_request_is_followed_by_its_shape_and_not_by_the_plain_answer():
    import tinyworld
    answer = "Zopo sails from Harlow."
    for k, (_, apply) in enumerate(tinyworld.FORMAT_REQUESTS):
        assert read_probe.follows("stage 0", k, apply(answer)) and not read_probe.follows("stage 0", k, answer)
        assert read_probe.follows("stage 0", k, apply("Vobese plays punk music."))  # any words, so formatted
    for k, (_, apply, check) in enumerate(data.INSTRUCTIONS):  # stage 2's pool: eval.py's own check
        assert read_probe.follows("stage 2", k, apply(answer)) == check(apply(answer)) is True


def test_each_pool_has_its_own_words_and_the_spread_is_measured_from_the_centroid():
    import tinyworld
    tok = data.Tokenizer(os.path.join(ROOT, "tiny", "base"))
    words = read_probe.pool_words(tok)
    assert len(words["stage 2"]) >= 10 and len(words["stage 0"]) >= 10
    assert not set(words["stage 2"]) & set(words["stage 0"])
    for pool, sentences, other in (("stage 2", [s for s, _, _ in data.INSTRUCTIONS], tinyworld.FORMAT_REQUESTS),
                                   ("stage 0", [s for s, _ in tinyworld.FORMAT_REQUESTS], data.INSTRUCTIONS)):
        for i in words[pool]:
            word = tok.decode([i]).strip()
            assert any(word in re.findall(r"[A-Za-z]+", s) for s in sentences)
            assert not any(word in re.findall(r"[A-Za-z]+", r[0]) for r in other)
    far, norm = read_probe.spread(torch.tensor([[3.0, 4.0], [3.0, -4.0], [0.0, 1.0]]), [0, 1])
    assert (far, norm) == (4.0, 5.0)
