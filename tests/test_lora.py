"""lora.py is the same function as peft's LoRA, reads and writes peft's files, and merges exactly."""
import json

import pytest
import torch

from lora import (AdapterError, LoRALinear, apply_lora, load_adapter, lora_state_dict, merge_lora, save_adapter)
from model import Llama

TARGETS = ("q_proj", "v_proj")


def randomize_lora(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, p in model.named_parameters():
            if ".lora_" in k:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def peft_model(hf, targets=TARGETS, r=8, alpha=16):
    from peft import LoraConfig, get_peft_model
    return get_peft_model(hf, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(targets),
                                         task_type="CAUSAL_LM"))


def copy_ours_into_peft(ours, peft):
    peft_params = dict(peft.named_parameters())
    with torch.no_grad():
        for k, v in lora_state_dict(ours).items():
            peft_params["base_model.model." + k.replace(".weight", ".default.weight")].copy_(v)


def test_fresh_adapter_leaves_logits_unchanged(hf_llama):
    path, _ = hf_llama(num_key_value_heads=2)
    model = Llama.from_pretrained(path)
    tokens = torch.randint(0, 128, (2, 16))
    with torch.no_grad():
        before = model(tokens)
        apply_lora(model)
        assert torch.equal(model(tokens), before)


def test_only_lora_parameters_train_and_stay_fp32_on_a_bf16_base(hf_llama):
    path, _ = hf_llama()
    model = apply_lora(Llama.from_pretrained(path, dtype=torch.bfloat16), targets=("q_proj", "v_proj", "down_proj"))
    trainable = {k: p for k, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in k for k in trainable)
    assert all(p.dtype == torch.float32 for p in trainable.values())
    assert model.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    assert isinstance(model.model.layers[1].mlp.down_proj, LoRALinear)
    assert not isinstance(model.model.layers[1].self_attn.k_proj, LoRALinear)
    r = 8
    assert trainable["model.layers.0.self_attn.q_proj.lora_A.weight"].shape == (r, 64)
    assert trainable["model.layers.0.self_attn.q_proj.lora_B.weight"].shape == (64, r)
    # the frozen weight keeps its checkpoint name, so base checkpoints still load
    assert "model.layers.0.self_attn.q_proj.weight" in model.state_dict()


@pytest.mark.parametrize("targets,tied", [(TARGETS, False), (("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                                "up_proj", "down_proj"), False),
                                          (("q_proj", "v_proj", "lm_head"), False), (("q_proj", "v_proj", "lm_head"), True)])
def test_logits_and_lora_gradients_match_peft(hf_llama, targets, tied):
    path, hf = hf_llama(num_key_value_heads=2, tie_word_embeddings=tied)
    ours = apply_lora(Llama.from_pretrained(path), targets=targets)
    randomize_lora(ours)
    peft = peft_model(hf, targets)
    copy_ours_into_peft(ours, peft)
    tokens = torch.randint(0, 128, (2, 20))
    labels = tokens.clone()
    labels[:, :8] = -100
    logits, loss = ours(tokens), ours.loss(tokens, labels)
    ref = peft(input_ids=tokens, labels=labels)
    assert (logits - ref.logits).abs().max().item() <= 1e-4
    loss.backward()
    ref.loss.backward()
    peft_params = dict(peft.named_parameters())
    for k, p in ours.named_parameters():
        if p.requires_grad:
            ref_grad = peft_params["base_model.model." + k.replace(".weight", ".default.weight")].grad
            assert (p.grad - ref_grad).abs().max().item() <= 1e-5 * max(1.0, ref_grad.abs().max().item()), k


def test_our_adapter_loads_in_peft_with_the_same_logits(hf_llama, tmp_path):
    from peft import PeftModel
    path, hf = hf_llama(num_key_value_heads=2)
    ours = apply_lora(Llama.from_pretrained(path))
    randomize_lora(ours)
    save_adapter(ours, str(tmp_path / "a"), base_model_name_or_path=path)
    from safetensors import safe_open
    with safe_open(str(tmp_path / "a" / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert len(keys) == 2 * 2 * 2 and all(".lora_" in k for k in keys)  # layers x targets x (A, B), nothing else
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys
    cfg = json.load(open(tmp_path / "a" / "adapter_config.json"))
    assert (cfg["r"], cfg["lora_alpha"], cfg["target_modules"], cfg["peft_type"]) == (8, 16, ["q_proj", "v_proj"], "LORA")
    peft = PeftModel.from_pretrained(hf, str(tmp_path / "a")).eval()
    tokens = torch.randint(0, 128, (2, 20))
    with torch.no_grad():
        assert (ours(tokens) - peft(input_ids=tokens).logits).abs().max().item() <= 1e-4


def test_lm_head_adapter_on_a_tied_model_loads_in_peft_and_merges_into_an_untied_checkpoint(hf_llama, tmp_path):
    """The tiny world's LoRA includes lm_head, whose weight is the input embedding (tied): the adapter must
    touch only the output side, load in peft as it is, and a merge must untie rather than change the inputs."""
    from peft import PeftModel
    path, hf = hf_llama(tie_word_embeddings=True)
    ours = apply_lora(Llama.from_pretrained(path), targets=("q_proj", "v_proj", "lm_head"))
    randomize_lora(ours)
    embed_before = ours.model.embed_tokens.weight.clone()
    save_adapter(ours, str(tmp_path / "a"), base_model_name_or_path=path)
    tokens = torch.randint(0, 128, (2, 20))
    with torch.no_grad():
        expected = ours(tokens)
        peft = PeftModel.from_pretrained(hf, str(tmp_path / "a")).eval()
        assert (expected - peft(input_ids=tokens).logits).abs().max().item() <= 1e-4
        merged = merge_lora(ours)
        assert torch.equal(merged.model.embed_tokens.weight, embed_before)  # the inputs are untouched
        assert not merged.args.tie_word_embeddings
        merged.save_pretrained(str(tmp_path / "m"))
        again = Llama.from_pretrained(str(tmp_path / "m"))
        assert json.load(open(tmp_path / "m" / "config.json"))["tie_word_embeddings"] is False
        assert (again(tokens) - expected).abs().max().item() <= 1e-4


def test_peft_adapter_loads_in_ours(hf_llama, tmp_path):
    path, hf = hf_llama()
    peft = peft_model(hf, r=4, alpha=32)
    with torch.no_grad():
        for k, p in peft.named_parameters():
            if "lora_" in k:
                p.normal_(0, 0.1)
    peft.save_pretrained(str(tmp_path / "p"))
    ours = load_adapter(Llama.from_pretrained(path), str(tmp_path / "p"))
    assert ours.lora_config["r"] == 4 and ours.model.layers[0].self_attn.q_proj.scaling == 8.0
    tokens = torch.randint(0, 128, (2, 20))
    with torch.no_grad():
        assert (ours(tokens) - peft(input_ids=tokens).logits).abs().max().item() <= 1e-4


def test_merge_then_save_pretrained_loads_in_transformers_with_the_same_logits(hf_llama, tmp_path):
    from transformers import LlamaForCausalLM
    path, _ = hf_llama(num_key_value_heads=2)
    ours = apply_lora(Llama.from_pretrained(path))
    randomize_lora(ours)
    tokens = torch.randint(0, 128, (2, 20))
    with torch.no_grad():
        unmerged = ours(tokens)
        merge_lora(ours)
        assert not any(isinstance(m, LoRALinear) for m in ours.modules())
        assert (ours(tokens) - unmerged).abs().max().item() <= 1e-4
    ours.save_pretrained(str(tmp_path / "merged"))
    back = LlamaForCausalLM.from_pretrained(str(tmp_path / "merged")).eval()
    with torch.no_grad():
        assert (back(tokens).logits - unmerged).abs().max().item() <= 1e-4


def test_merge_is_computed_in_fp32_and_cast_once(hf_llama):
    path, _ = hf_llama()
    model = apply_lora(Llama.from_pretrained(path, dtype=torch.bfloat16))
    randomize_lora(model)
    layer = model.model.layers[0].self_attn.q_proj
    expected = (layer.weight.float() + 2.0 * layer.lora_B.weight @ layer.lora_A.weight).to(torch.bfloat16)
    merge_lora(model)
    assert torch.equal(model.model.layers[0].self_attn.q_proj.weight, expected)


def test_training_steps_change_only_the_adapter(hf_llama):
    path, _ = hf_llama()
    model = apply_lora(Llama.from_pretrained(path))
    base = {k: v.clone() for k, v in model.state_dict().items() if ".lora_" not in k}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    tokens = torch.randint(0, 128, (2, 12))
    for _ in range(3):
        loss = model.loss(tokens, tokens)
        loss.backward()
        opt.step()
        opt.zero_grad()
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in base.items())
    assert model.model.layers[0].self_attn.q_proj.lora_B.weight.abs().sum() > 0


# ---- bad input ----

def test_adapter_for_another_model_is_refused(hf_llama, tmp_path):
    path, _ = hf_llama()
    ours = apply_lora(Llama.from_pretrained(path))
    save_adapter(ours, str(tmp_path / "a"))
    other, _ = hf_llama(hidden_size=32, num_attention_heads=2, num_key_value_heads=2)
    with pytest.raises(AdapterError, match=r"adapter_model.safetensors: tensor .*lora_A.weight' has shape \(8, 64\)"):
        load_adapter(Llama.from_pretrained(other), str(tmp_path / "a"))
    with pytest.raises(AdapterError, match="adapter config .* differs"):
        load_adapter(apply_lora(Llama.from_pretrained(path), r=4), str(tmp_path / "a"))


@pytest.mark.parametrize("edit,field", [({"use_dora": True}, "use_dora"), ({"rank_pattern": {"q_proj": 4}}, "rank_pattern"),
                                         ({"target_modules": ".*q_proj"}, "target_modules"),
                                         ({"target_modules": ["embed_tokens"]}, None)])
def test_unsupported_adapter_config_is_refused(hf_llama, tmp_path, edit, field):
    path, _ = hf_llama()
    save_adapter(apply_lora(Llama.from_pretrained(path)), str(tmp_path / "a"))
    file = tmp_path / "a" / "adapter_config.json"
    cfg = json.load(open(file))
    cfg.update(edit)
    file.write_text(json.dumps(cfg))
    match = f"{field}=.* is not supported" if field else "LoRA target 'embed_tokens' is not a Llama linear"
    with pytest.raises(AdapterError, match=match):
        load_adapter(Llama.from_pretrained(path), str(tmp_path / "a"))


def test_missing_adapter_dir_is_one_line(tmp_path, hf_llama):
    path, _ = hf_llama()
    with pytest.raises(AdapterError, match="adapter_config.json: missing"):
        load_adapter(Llama.from_pretrained(path), str(tmp_path / "none"))
