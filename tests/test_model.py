"""model.py is the same function as transformers' LlamaForCausalLM, loads/saves its files, and decodes exactly."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

from generate import generate
from model import CheckpointError, Llama
from packing import shared_prefixes

CONFIGS = {
    "mha": {},
    "gqa_rope_theta": dict(num_key_value_heads=2, rope_theta=500000.0),
    "odd_sizes": dict(hidden_size=60, num_attention_heads=5, num_key_value_heads=1, intermediate_size=77,
                      vocab_size=101, num_hidden_layers=3),
    "sharded": dict(max_shard_size="40KB"),
    "tied": dict(tie_word_embeddings=True),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_match_transformers_fp32(hf_llama, name):
    path, ref = hf_llama(**CONFIGS[name])
    if name == "sharded":
        assert os.path.exists(os.path.join(path, "model.safetensors.index.json"))
    ours = Llama.from_pretrained(path)
    tokens = torch.randint(0, ours.args.vocab_size, (3, 37))
    with torch.no_grad():
        diff = (ours(tokens) - ref(tokens).logits).abs().max().item()
    assert diff <= 1e-4, diff


def test_loss_matches_transformers_with_ignored_labels(hf_llama):
    path, ref = hf_llama(num_key_value_heads=2)
    ours = Llama.from_pretrained(path)
    tokens = torch.randint(0, 128, (2, 20))
    labels = tokens.clone()
    labels[:, :12] = -100
    with torch.no_grad():
        loss = ours.loss(tokens, labels)
        ref_loss = ref(tokens, labels=labels).loss
    assert abs(loss.item() - ref_loss.item()) < 1e-5


def test_answer_only_logits_give_the_full_logits_loss_and_gradients(hf_llama):
    """model.loss projects only labelled positions onto the vocabulary; the result is the full-logits loss."""
    path, _ = hf_llama(num_key_value_heads=2)
    model = Llama.from_pretrained(path)
    tokens = torch.randint(0, 128, (3, 24))
    labels = torch.full_like(tokens, -100)
    labels[0, 20:], labels[1, 5:9], labels[2, 23:] = tokens[0, 20:], tokens[1, 5:9], tokens[2, 23:]
    grads = []
    for answer_only in (True, False):
        model.zero_grad()
        if answer_only:
            loss = model.loss(tokens, labels, reduction="sum")
        else:
            logits = model(tokens)[:, :-1].flatten(0, 1).float()
            loss = F.cross_entropy(logits, labels[:, 1:].flatten(), ignore_index=-100, reduction="sum")
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    (la, ga), (lb, gb) = grads
    assert abs(la - lb) <= 1e-5 * abs(lb)
    assert all((a - b).abs().max().item() <= 1e-5 * max(1.0, b.abs().max().item()) for a, b in zip(ga, gb))


def test_bf16_close_to_fp32(hf_llama):
    path, _ = hf_llama(num_key_value_heads=2)
    tokens = torch.randint(0, 128, (2, 30))
    with torch.no_grad():
        fp32 = Llama.from_pretrained(path)(tokens)
        bf16 = Llama.from_pretrained(path, dtype=torch.bfloat16)(tokens)
    assert bf16.dtype == torch.bfloat16
    assert (bf16.float() - fp32).abs().max().item() < 0.05 * fp32.abs().max().item()


def test_bf16_matches_transformers_bf16(hf_llama):
    from transformers import LlamaForCausalLM
    path, _ = hf_llama(num_key_value_heads=2)
    ref = LlamaForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()
    ours = Llama.from_pretrained(path, dtype=torch.bfloat16)
    tokens = torch.randint(0, 128, (2, 30))
    with torch.no_grad():
        diff = (ours(tokens).float() - ref(tokens).logits.float()).abs().max().item()
    assert diff <= 0.02, diff  # same op order as HF; only bf16 kernel rounding differs


@pytest.mark.parametrize("shard", [False, True])
def test_save_pretrained_loads_in_transformers(hf_llama, tmp_path, shard):
    from transformers import LlamaForCausalLM
    path, _ = hf_llama(num_key_value_heads=2, rope_theta=20000.0)
    ours = Llama.from_pretrained(path)
    out = str(tmp_path / "saved")
    ours.save_pretrained(out, **({"max_shard_bytes": 50_000} if shard else {}))
    assert os.path.exists(os.path.join(out, "model.safetensors.index.json")) == shard
    back = LlamaForCausalLM.from_pretrained(out).eval()
    tokens = torch.randint(0, 128, (2, 25))
    with torch.no_grad():
        assert (ours(tokens) - back(tokens).logits).abs().max().item() <= 1e-4
    again = Llama.from_pretrained(out)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), again.state_dict().values()))


def naive_greedy(model, prompt, max_new_tokens, eos_id):
    """Step-by-step greedy decoding without any cache: the definition generate() must reproduce."""
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = model(torch.tensor([seq]))[0, -1].argmax().item()
            if nxt == eos_id:
                break
            seq.append(nxt)
    return seq[len(prompt):]


def test_generate_batched_ragged_equals_uncached_greedy_and_transformers(hf_llama):
    path, ref = hf_llama(num_key_value_heads=2)
    ours = Llama.from_pretrained(path)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, 128, (n,), generator=g).tolist() for n in (5, 17, 1, 9, 12)]
    eos = 7
    got = generate(ours, prompts, max_new_tokens=20, eos_id=eos, batch_size=4)
    for p, toks in zip(prompts, got):
        assert toks == naive_greedy(ours, p, 20, eos)
        hf = ref.generate(torch.tensor([p]), max_new_tokens=20, do_sample=False, eos_token_id=eos,
                          pad_token_id=0)[0, len(p):].tolist()
        assert toks == (hf[:hf.index(eos)] if eos in hf else hf)


def test_generate_stops_each_row_at_its_own_eos(hf_llama):
    path, _ = hf_llama()
    ours = Llama.from_pretrained(path)
    prompts = [[5, 6, 7], [9, 10, 11, 12, 13, 14]]
    free = generate(ours, prompts, max_new_tokens=12, eos_id=-1)  # never stops
    eos = free[0][3]  # make row 0's 4th token the EOS
    got = generate(ours, prompts, max_new_tokens=12, eos_id=eos)
    assert got[0] == free[0][:3]
    assert got[1] == (free[1][:free[1].index(eos)] if eos in free[1] else free[1])


def prefix_batch(g, vocab=128):
    """Rows that share prompt prefixes as a template's would: rows 1-3 the first 20 tokens of row 0, row 4
    its first 30, row 5 nothing; right-padded by random tokens."""
    tokens = torch.randint(3, vocab, (6, 40), generator=g)
    tokens[1:4, :20] = tokens[0, :20]
    tokens[4, :30] = tokens[0, :30]
    return tokens


@pytest.mark.parametrize("gqa", [False, True])
def test_packed_loss_with_shared_prefixes_gives_the_padded_loss_and_gradients(hf_llama, gqa):
    """model.loss packs rows without padding and computes a prefix shared by rows once; the padded batch
    (what a compiled model runs) gives the same loss and gradients, LoRA included, labels in and out of
    the shared prefix, a row without labels."""
    import lora
    path, _ = hf_llama(**({"num_key_value_heads": 2} if gqa else {}))
    model = Llama.from_pretrained(path)
    lora.apply_lora(model, ("q_proj", "v_proj"), r=4, alpha=8)
    torch.manual_seed(0)
    for m in lora.lora_modules(model).values():
        torch.nn.init.normal_(m.lora_B.weight, std=0.1)
    tokens = prefix_batch(torch.Generator().manual_seed(2))
    labels = torch.full_like(tokens, -100)
    for row, (a, b) in enumerate([(25, 40), (22, 30), (39, 40), (10, 15), (31, 35)]):
        labels[row, a:b] = tokens[row, a:b]
    assert [n for _, n in shared_prefixes(tokens[:5, :-1].tolist())] == [0, 20, 20, 20, 30]
    results = []
    for packed in (True, False):
        model.zero_grad()
        model.compiled = not packed  # the padded path (compiled models keep it)
        loss = model.loss(tokens, labels, reduction="sum")
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.parameters() if p.requires_grad]))
    model.compiled = False
    (la, ga), (lb, gb) = results
    assert abs(la - lb) <= 1e-5 * abs(lb)
    assert all((a - b).abs().max().item() <= 1e-5 * max(1.0, b.abs().max().item()) for a, b in zip(ga, gb))


def test_generate_with_shared_prefixes_equals_uncached_greedy(hf_llama):
    """Prompts sharing a prefix: prefilled once, the tokens of decoding each prompt alone without a cache; rows
    leave the batch as they end."""
    path, _ = hf_llama(num_key_value_heads=2)
    ours = Llama.from_pretrained(path)
    tokens = prefix_batch(torch.Generator().manual_seed(3))
    prompts = [tokens[i, :n].tolist() for i, n in enumerate((30, 25, 22, 35, 40, 7))]
    free = generate(ours, prompts, 12, eos_id=-1)
    eos = free[2][4]  # some rows end early, at different steps
    got = generate(ours, prompts, 12, eos_id=eos)
    assert any(len(t) < 12 for t in got) and any(len(t) == 12 for t in got)
    for p, toks in zip(prompts, got):
        assert toks == naive_greedy(ours, p, 12, eos)
    ours.share_prefixes = False
    assert generate(ours, prompts, 12, eos_id=eos) == got


def test_generate_under_bf16_autocast_runs_close_to_fp32(hf_llama):
    """The packed prefill writes a bf16 KV cache under autocast (resolve_device's choice on a bf16 CPU)."""
    path, _ = hf_llama()
    ours = Llama.from_pretrained(path)
    prompts = [t.tolist() for t in prefix_batch(torch.Generator().manual_seed(4))]
    a = generate(ours, prompts, 6, eos_id=-1)
    b = generate(ours, prompts, 6, eos_id=-1, autocast=True)
    assert all(len(x) == 6 for x in b)
    assert sum(x[0] == y[0] for x, y in zip(a, b)) >= len(a) - 1  # bf16 may flip a near-tie, rarely


# ---- bad input: one clear line naming the file and the fix ----

def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such model directory.*--model"):
        Llama.from_pretrained(str(tmp_path / "nope"))


def test_missing_config(tmp_path):
    with pytest.raises(CheckpointError, match="config.json: missing"):
        Llama.from_pretrained(str(tmp_path))


def test_bin_only_checkpoint_is_refused_with_reason(hf_llama):
    path, _ = hf_llama()
    os.rename(os.path.join(path, "model.safetensors"), os.path.join(path, "pytorch_model.bin"))
    with pytest.raises(CheckpointError, match="only pytorch_model.*bin.*pickles.*safetensors"):
        Llama.from_pretrained(path)


def test_no_weights_at_all(hf_llama):
    path, _ = hf_llama()
    os.remove(os.path.join(path, "model.safetensors"))
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        Llama.from_pretrained(path)


def _edit_config(path, **kw):
    file = os.path.join(path, "config.json")
    with open(file) as f:
        cfg = json.load(f)
    cfg.update(kw)
    with open(file, "w") as f:
        json.dump(cfg, f)


def test_misshaped_tensor(hf_llama):
    path, _ = hf_llama()
    _edit_config(path, intermediate_size=100)
    with pytest.raises(CheckpointError, match=r"model.safetensors: tensor 'model.layers.0.mlp.down_proj.weight' "
                                              r"has shape \(64, 96\).*\(64, 100\)"):
        Llama.from_pretrained(path)


def test_missing_tensor(hf_llama, tmp_path):
    from safetensors.torch import load_file, save_file
    path, _ = hf_llama()
    file = os.path.join(path, "model.safetensors")
    state = load_file(file)
    del state["model.norm.weight"]
    save_file(state, file)
    with pytest.raises(CheckpointError, match="1 tensors missing.*'model.norm.weight'"):
        Llama.from_pretrained(path)


@pytest.mark.parametrize("edit,message", [
    (dict(rope_scaling={"type": "linear", "factor": 2.0}), "rope_scaling .* not supported"),
    (dict(model_type="mistral"), "model_type 'mistral' is not supported"),
    (dict(rope_parameters={"rope_type": "llama3", "rope_theta": 1.0}), "rope_type 'llama3' is not supported"),
])
def test_unsupported_config(hf_llama, edit, message):
    path, _ = hf_llama()
    _edit_config(path, **edit)
    with pytest.raises(CheckpointError, match=message):
        Llama.from_pretrained(path)


def test_llama2_style_config_without_rope_theta_uses_10000(hf_llama):
    path, _ = hf_llama()
    file = os.path.join(path, "config.json")
    with open(file) as f:
        cfg = json.load(f)
    cfg.pop("rope_parameters")
    cfg["rope_scaling"] = None  # Llama-2-7b-chat-hf's config.json has these two exactly like this
    with open(file, "w") as f:
        json.dump(cfg, f)
    assert Llama.from_pretrained(path).args.rope_theta == 10000.0
