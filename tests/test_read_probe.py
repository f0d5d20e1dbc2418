"""tools/read_probe.py scores the answer's first word and the rest at the right positions (teacher-forced)."""
import os
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
