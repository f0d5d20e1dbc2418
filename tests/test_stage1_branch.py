"""Stage 1 under stage 2 stays a frozen fp32 LoRA branch: exact in fp32, closer than a bf16 merge in bf16, never
saved with the stage-2 adapter, rebuilt from the lineage by eval and a later --init; --merge-stage1 is the old path."""
import json
import os

import pytest
import torch
from safetensors import safe_open

import eval as ev
import lora
import runs
import train
from lora import apply_lora, freeze_lora, merge_lora, save_adapter
from model import Llama

ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def randomize_lora(model, std, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, p in model.named_parameters():
            if ".lora_" in k:
                p.copy_(torch.randn(p.shape, generator=g) * std)


def stage1_then_stage2(path, dtype=torch.float32, std=0.1, targets1=ALL, targets2=("q_proj", "v_proj")):
    """A model with a random stage-1 adapter frozen as a branch and a random trainable stage-2 adapter."""
    model = apply_lora(Llama.from_pretrained(path, dtype=dtype), targets=targets1)
    randomize_lora(model, std, seed=1)
    freeze_lora(model)
    apply_lora(model, targets=targets2, r=4, alpha=8)
    randomize_lora(model, std, seed=2)
    return model


def test_branch_forward_equals_the_fp32_merge(hf_llama):
    path, _ = hf_llama(num_key_value_heads=2)
    model = stage1_then_stage2(path)  # stage 1 on all seven linears, stage 2 on q, v: some layers hold a branch only
    assert isinstance(model.model.layers[0].mlp.up_proj, lora.LoRALinear)
    assert model.model.layers[0].mlp.up_proj.lora_A is None
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(lora.lora_state_dict(model)) and all("q_proj" in k or "v_proj" in k for k in trainable)
    tokens = torch.randint(0, 128, (2, 20))
    with torch.no_grad():
        branch = model(tokens)
        merged = merge_lora(model)(tokens)
    assert not lora.lora_modules(model)
    assert (branch - merged).abs().max().item() <= 1e-5


def test_stage2_gradients_reach_only_the_stage2_adapter(hf_llama):
    path, _ = hf_llama()
    model = stage1_then_stage2(path)
    frozen = {k: v.clone() for k, v in model.named_buffers() if "frozen_" in k}
    tokens = torch.randint(0, 128, (2, 12))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.loss(tokens, tokens).backward()
    opt.step()
    assert frozen and all(torch.equal(v, dict(model.named_buffers())[k]) for k, v in frozen.items())
    assert all(v.dtype == torch.float32 for v in frozen.values())


def test_in_bf16_weights_the_branch_is_closer_to_the_fp32_reference_than_the_merge(hf_llama):
    """A paper-sized update (||dW|| ~ 0.5% of ||W||) on bf16 weights: merged, many entries round back to W."""
    path, _ = hf_llama(num_key_value_heads=2)
    tokens = torch.randint(0, 128, (2, 20))
    build = lambda dtype: apply_lora(Llama.from_pretrained(path, dtype=dtype), targets=ALL)
    ref = build(torch.bfloat16).float()  # the bf16 weights, exactly, plus the fp32 adapter: what was trained
    randomize_lora(ref, 0.004, seed=1)
    branch, merged, trained = build(torch.bfloat16), build(torch.bfloat16), build(torch.bfloat16)
    for m in (branch, merged, trained):
        randomize_lora(m, 0.004, seed=1)
    freeze_lora(branch)
    merge_lora(merged)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # as a GPU computes it
        out = {name: m(tokens) for name, m in (("branch", branch), ("merged", merged), ("trained", trained))}
    assert torch.equal(out["branch"], out["trained"])  # bit for bit the function stage 1 computed while training
    assert not torch.equal(out["merged"], out["trained"])
    layer = ref.model.layers[0].self_attn.q_proj
    delta = layer.scaling * layer.lora_B.weight @ layer.lora_A.weight
    assert 0.002 < (delta.norm() / layer.weight.norm()).item() < 0.01  # the regime the README measures
    unchanged = (merged.model.layers[0].self_attn.q_proj.weight == layer.weight.bfloat16()).float().mean().item()
    assert unchanged > 0.2  # the merge erased these entries of the update
    with torch.no_grad():  # the same bf16 tensors computed in fp32 (an exact copy): the error of the weights alone
        want = ref(tokens)
        err = {name: (m.float()(tokens) - want).abs().max().item() for name, m in (("branch", branch), ("merged", merged))}
    assert err["branch"] <= 1e-5 < err["merged"], err  # the branch loses nothing of the update
    # (against the fp32 reference in bf16 compute both differ by bf16's own noise; the README measures them)


def test_stage2_adapter_holds_only_stage2_keys_and_loads_in_peft_on_the_stage1_merged_base(hf_llama, tmp_path):
    from peft import PeftModel
    path, hf = hf_llama(num_key_value_heads=2)
    stage1 = apply_lora(Llama.from_pretrained(path), targets=ALL)
    randomize_lora(stage1, 0.1, seed=1)
    save_adapter(stage1, str(tmp_path / "s1"), base_model_name_or_path=path)
    ours = stage1_then_stage2(path)
    save_adapter(ours, str(tmp_path / "s2"), base_model_name_or_path=path)
    with safe_open(str(tmp_path / "s2" / "adapter_model.safetensors"), "pt") as f:
        saved = {k: f.get_tensor(k) for k in f.keys()}
    want = {lora.PEFT_PREFIX + k: v for k, v in lora.lora_state_dict(ours).items()}
    assert saved.keys() == want.keys() and len(saved) == 2 * 2 * 2  # layers x (q, v) x (A, B): stage 2 alone
    assert all(torch.equal(saved[k], want[k]) for k in saved)
    assert json.load(open(tmp_path / "s2" / "adapter_config.json"))["r"] == 4
    merged_base = PeftModel.from_pretrained(hf, str(tmp_path / "s1")).merge_and_unload()  # fp32: exact up to rounding
    peft = PeftModel.from_pretrained(merged_base, str(tmp_path / "s2")).eval()
    tokens = torch.randint(0, 128, (2, 20))
    with torch.no_grad():
        assert (ours(tokens) - peft(input_ids=tokens).logits).abs().max().item() <= 1e-4


def test_a_second_trainable_adapter_needs_the_first_frozen_or_merged(hf_llama):
    path, _ = hf_llama()
    model = apply_lora(Llama.from_pretrained(path))
    with pytest.raises(lora.AdapterError, match=r"freeze_lora\(model\) or merge_lora\(model\) first"):
        apply_lora(model)


# ---- train.py and eval.py on the micro world ----

def stage_args(w, out, stage, *extra):
    data = ["--asqa", w["asqa"]] if stage == 1 else ["--hotpot", w["hotpot"], "--preset", "micro"]
    return ["--stage", str(stage), "--model", w["base"], *data, "--out", out, "--max-steps", "2", "--lr", "1e-2",
            "--micro-batch", "2", "--grad-accum", "1", "--max-records", "12", "--val-share", "0", *extra]


@pytest.fixture(scope="module")
def stage1_run(micro_world, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("s1") / "stage1")
    train.main(stage_args(micro_world, out, 1))
    return out


def expected_q_proj(w, s1, dtype):
    """The first q_proj as --merge-stage1 (and train.py before the branch) builds it: fp32 sum, cast once."""
    base = Llama.from_pretrained(w["base"], dtype=dtype)
    with safe_open(os.path.join(s1, "adapter_model.safetensors"), "pt") as f:
        key = "base_model.model.model.layers.0.self_attn.q_proj."
        b, a = f.get_tensor(key + "lora_B.weight"), f.get_tensor(key + "lora_A.weight")
    weight = base.model.layers[0].self_attn.q_proj.weight
    return weight, (weight.float() + 2.0 * b @ a).to(dtype), 2.0 * b @ a


def test_merge_stage1_reproduces_the_authors_merge_into_bf16_weights(micro_world, stage1_run, tmp_path):
    s2 = str(tmp_path / "s2")
    model = train.train(train.parse_config(stage_args(micro_world, s2, 2, "--init", stage1_run, "--merge-stage1",
                                                      "--dtype", "bfloat16")))
    _, expected, _ = expected_q_proj(micro_world, stage1_run, torch.bfloat16)
    assert torch.equal(model.model.layers[0].self_attn.q_proj.weight, expected)
    assert not model.model.layers[0].self_attn.q_proj.frozen_scaling  # no branch: stage 1 is in the weights
    lin = runs.read_lineage(s2)
    assert lin["merge"] is True and lin["merged"] == [os.path.normpath(stage1_run)]
    rebuilt, _ = lora.load_trained(s2, lambda p: Llama.from_pretrained(p, dtype=torch.bfloat16))
    tokens = torch.randint(0, 300, (1, 12))
    with torch.no_grad():
        assert torch.equal(rebuilt(tokens), model(tokens))


def test_default_stage2_keeps_stage1_as_a_branch_and_eval_and_a_later_init_rebuild_it(micro_world, stage1_run,
                                                                                      tmp_path):
    w, s2, s3 = micro_world, str(tmp_path / "s2"), str(tmp_path / "s3")
    model = train.train(train.parse_config(stage_args(w, s2, 2, "--init", stage1_run, "--dtype", "float32")))
    weight, _, delta = expected_q_proj(w, stage1_run, torch.float32)
    q = model.model.layers[0].self_attn.q_proj
    assert torch.equal(q.weight, weight)  # the base weight, untouched
    assert torch.equal(q.frozen_scaling[0] * q.frozen_B0 @ q.frozen_A0, delta)  # stage 1 exactly, in fp32
    lin = runs.read_lineage(s2)
    assert lin["merge"] is False and lin["merged"] == [os.path.normpath(stage1_run)]
    tokens = torch.randint(0, 300, (1, 12))
    cfg = ev.parse_config(["--dtype", "float32"])
    rebuilt = ev.load(cfg, s2, torch.device("cpu"), torch.float32)
    assert lin["base"] == os.path.normpath(w["base"]) and lin["adapter"]
    assert rebuilt.model.layers[0].self_attn.q_proj.frozen_scaling  # eval rebuilt the branch, as trained
    with torch.no_grad():
        assert torch.equal(rebuilt(tokens), model(tokens))
    # a later --init of the stage-2 run stacks both earlier adapters as branches, and its lineage says so
    model3 = train.train(train.parse_config(stage_args(w, s3, 2, "--init", s2, "--dtype", "float32")))
    assert len(model3.model.layers[0].self_attn.q_proj.frozen_scaling) == 2
    assert runs.read_lineage(s3)["merged"] == [os.path.normpath(stage1_run), s2]
    rebuilt3, _ = lora.load_trained(s3, Llama.from_pretrained)
    with torch.no_grad():
        assert torch.equal(rebuilt3(tokens), model3(tokens))


def test_a_lineage_written_before_the_branch_is_rebuilt_merged(micro_world, stage1_run, tmp_path):
    s2 = str(tmp_path / "s2")
    train.main(stage_args(micro_world, s2, 2, "--init", stage1_run, "--merge-stage1"))
    file = os.path.join(s2, "lineage.json")
    old = json.load(open(file))
    del old["merge"]  # as train.py wrote it before --merge-stage1 existed
    json.dump(old, open(file, "w"))
    rebuilt, lin = lora.load_trained(s2, Llama.from_pretrained)
    assert lin["merge"] is True and not rebuilt.model.layers[0].self_attn.q_proj.frozen_scaling


def test_merge_stage1_without_init_is_one_line():
    with pytest.raises(SystemExit, match="--merge-stage1 merges the adapters of --init; give --init DIR"):
        train.parse_config(["--stage", "2", "--merge-stage1"])


def test_a_bad_merge_field_in_lineage_names_the_file(tmp_path):
    (tmp_path / "lineage.json").write_text('{"base": "b", "merged": [], "merge": "yes"}')
    with pytest.raises(runs.RunError, match=r"lineage.json: expected .*\"merge\": true\|false"):
        runs.read_lineage(str(tmp_path))


def test_init_from_a_run_stacked_the_other_way_is_refused(micro_world, stage1_run, tmp_path):
    """One lineage, one way of stacking: a stage-2 run trained on a merged stage 1 cannot become the frozen
    branch of a later run (nor the other way), since the adapter would sit on a model it was never trained on."""
    w, s2 = micro_world, str(tmp_path / "s2")
    os.makedirs(s2)
    for f in ("adapter_model.safetensors", "adapter_config.json"):
        with open(os.path.join(stage1_run, f), "rb") as src, open(os.path.join(s2, f), "wb") as dst:
            dst.write(src.read())
    runs.write_lineage(s2, w["base"], [stage1_run], merge=True)
    with pytest.raises(train.TrainError, match="merged into the weights; pass --merge-stage1"):
        train.train(train.parse_config(stage_args(w, str(tmp_path / "s3"), 2, "--init", s2)))
    runs.write_lineage(s2, w["base"], [stage1_run], merge=False)
    with pytest.raises(train.TrainError, match="frozen fp32 branches; drop --merge-stage1"):
        train.train(train.parse_config(stage_args(w, str(tmp_path / "s3"), 2, "--init", s2, "--merge-stage1")))
