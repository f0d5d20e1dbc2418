"""Tokenizers and chat templates: llama2 token sequences stay exactly as the shipped base was trained on them;
tokenizer.json models (SmolLM2, Qwen, Llama-3) encode as transformers does and get their own chat layout."""
import hashlib
import json
import random

import pytest

import data
from tokenizer import DataError, Tokenizer, chat_template, encode_chat

SMOLLM2_TEMPLATE = (  # SmolLM2-135M-Instruct's chat_template, verbatim
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA3_TEMPLATE = (  # Meta-Llama-3-8B-Instruct's chat_template, verbatim
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>",
            "<|end_header_id|>", "<|eot_id|>"]


class CharTokenizer:
    """One id per character: the token sequence then spells out exactly the text each piece was encoded from."""
    bos_id, eos_id, pad_id = 1, 2, 0

    def encode(self, text, bos=True, eos=False):
        return [1] * bos + [ord(c) for c in text] + [2] * eos

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def test_llama2_token_sequences_are_pinned():
    """tiny/base was trained on these sequences: every prompt, response, EOS and context cut (the hash was taken
    with the code before chat templates existed, so llama2 stays byte-identical)."""
    ctx = "This is a passage about Rome (band):\nRome band was formed in {1999}, says an old draft."
    recs = [dict(id="s1", prompt=data.cognition_prompt("When was the band Rome formed?", ctx), context=ctx,
                 output="Sufficient"),
            dict(id="s2", prompt=data.instruction_prompt(data.TASK_PROMPT, "Who?", ctx, data.INSTRUCTIONS[3][0], 2),
                 context=ctx, output=data.stage2_target("Person 0", 3, 2, True)),
            dict(id="e", prompt=data.eval_prompt("When?", ctx, True), context=ctx, output="1999", format="raw")]
    tok = CharTokenizer()
    out = [data.tokenize_records(tok, recs, cutoff) for cutoff in (4096, 3300, 1100)]  # whole, cut, dropped
    messages = [data.eval_messages("When?", ctx, prefix) for prefix in (False, True)]
    out.append([encode_chat(tok, user, system=system)[0] for system, user in messages])
    assert hashlib.sha256(json.dumps(out).encode()).hexdigest() == \
        "38b11dbda636c3ce176573898e485fdf84c1cd74dce42e2dc33d892b5985c168"
    assert data.eval_prompt("Q", "C", False) == data.LLAMA2_CHAT_EVAL.replace("{task_assignment}", "").replace(
        "{question}", "Q").replace("{context}", "C")


# ---- a tokenizer.json model (byte-level BPE, digits split off, as SmolLM2) ----

@pytest.fixture(scope="module")
def json_model(tmp_path_factory):
    """A directory with tokenizer.json, config.json and tokenizer_config.json (SmolLM2's chat template)."""
    from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    rng = random.Random(0)
    words = "the answer is a passage about band painter city born formed Not Provided CHECKING fulfilled".split()
    lines = [" ".join(rng.choice(words) for _ in range(10)) + f" {rng.randint(0, 3000)}.\n" for _ in range(500)]
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path = tmp_path_factory.mktemp("json_model")
    tok.save(str(path / "tokenizer.json"))
    write_json(path / "config.json", {"vocab_size": tok.get_vocab_size(), "bos_token_id": 1, "eos_token_id": 2})
    write_json(path / "tokenizer_config.json", {"tokenizer_class": "PreTrainedTokenizerFast",
                                                "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                                                "chat_template": SMOLLM2_TEMPLATE})
    return path


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)


def varied_strings(n=300, seed=0):
    """Unicode, digits, runs of spaces, tabs and newlines, punctuation, the words the model knows."""
    rng = random.Random(seed)
    pieces = ["the", " answer", "Not Provided", "1516", "3.14", " 42", "  ", "   ", "\n", "\n\n", "\t", "é", "ü",
              "中文", "🙂", "'s", "'t", "(x)", "{user}", "<<SYS>>", "[INST]", "CHECKING:", "<fulfilled>", " ", "ß",
              "Ωmega"]
    return [""] + ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))) for _ in range(n)]


def test_tokenizer_json_encodes_as_transformers_and_round_trips(json_model):
    from transformers import PreTrainedTokenizerFast
    ours, ref = Tokenizer(str(json_model)), PreTrainedTokenizerFast(tokenizer_file=str(json_model / "tokenizer.json"))
    assert (ours.bos_id, ours.eos_id, ours.pad_id) == (1, 2, 2)  # config.json's ids; pad falls back to EOS
    for s in varied_strings():
        ids = ours.encode(s, bos=False)
        assert ids == ref(s, add_special_tokens=False)["input_ids"], repr(s)
        assert ours.decode(ids) == s, repr(s)
    assert ours.encode("1516", bos=False) == [ours.token_id(d) for d in "1516"]  # every digit its own token
    assert ours.encode("x", bos=True, eos=True)[::2] == [1, 2]


@pytest.mark.parametrize("name,source", [("chatml", SMOLLM2_TEMPLATE), ("llama3", LLAMA3_TEMPLATE)])
def test_templates_render_token_exactly_what_apply_chat_template_renders(json_model, tmp_path, name, source):
    from transformers import PreTrainedTokenizerFast
    ref = PreTrainedTokenizerFast(tokenizer_file=str(json_model / "tokenizer.json"), bos_token="<|begin_of_text|>")
    ref.chat_template = source
    tok = Tokenizer(str(json_model))
    tok.bos_id = ref.bos_token_id  # Llama-3's BOS; the fixture's config names SmolLM2's
    write_json(tmp_path / "tokenizer_config.json", {"chat_template": source})
    template = chat_template(str(tmp_path))
    assert template.name == name
    system, user = data.eval_messages("Who formed the band 1999?", "a passage {user} about\n the band", True)
    for sys_msg in (None, system):
        messages = ([{"role": "system", "content": sys_msg}] if sys_msg else []) + [{"role": "user", "content": user}]
        want = ref(ref.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                   add_special_tokens=False)["input_ids"]
        ids, labels = encode_chat(tok, user, "The answer is 1999.", template, sys_msg)
        n = len(want)
        assert ids[:n] == want and labels[:n] == [-100] * n
        full = ref(ref.apply_chat_template(messages + [{"role": "assistant", "content": "The answer is 1999."}],
                                           tokenize=False), add_special_tokens=False)["input_ids"]
        assert ids == full[:len(ids)] and ref.decode(full[len(ids):]).strip() == ""  # chatml: a "\n" follows
        assert labels[n:] == ids[n:] and ids[-1] == tok.token_id(template.end_of_turn)  # loss: answer + end of turn
    assert template.default_system == ("You are a helpful AI assistant named SmolLM, trained by Hugging Face"
                                       if name == "chatml" else "")


def test_template_detection_and_refusals(json_model, tmp_path, tokenizer_path):
    assert chat_template(str(tmp_path)).name == "llama2"  # no chat template at all: Llama-2 / the tiny world
    write_json(tmp_path / "tokenizer_config.json", {"chat_template": "{{ messages[0]['content'] }}"})
    with pytest.raises(DataError, match="not exactly one of llama2, chatml, llama3.*pass --template NAME"):
        chat_template(str(tmp_path))
    assert chat_template(str(tmp_path), "chatml").name == "chatml"
    with pytest.raises(DataError, match="no tokenizer.model or tokenizer.json"):
        Tokenizer(str(tmp_path))
    write_json(tmp_path / "config.json", {"vocab_size": 100, "eos_token_id": 2})
    (tmp_path / "tokenizer.json").write_text((json_model / "tokenizer.json").read_text())
    with pytest.raises(DataError, match=r"tokenizer.json: tokenizer has \d+ tokens but the model's config.json says "
                                        "vocab_size 100"):
        Tokenizer(str(tmp_path))
    with pytest.raises(DataError, match="no token '<\\|im_end\\|>'"):
        data.TEMPLATES["chatml"].stop_id(Tokenizer(tokenizer_path))  # a sentencepiece model has no ChatML tokens
    with pytest.raises(DataError, match="cannot be trained with the chatml template"):
        data.tokenize_records(Tokenizer(str(json_model)), [dict(id="e", prompt="p", context="", output="o",
                                                                format="raw")], template=data.TEMPLATES["chatml"])
