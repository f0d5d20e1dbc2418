"""LoRA: Low-Rank Adaptation of Large Language Models (Hu et al., 2021), for any nn.Module, by module name.

A pretrained weight W (out x in) stays frozen. Beside it we learn a low-rank update B @ A, with
A: r x in and B: out x r, r << in, so the layer computes

    y = x W^T + (alpha / r) * x A^T B^T

- B starts at zero, so a fresh adapter leaves the model exactly as it was, and training starts from the
  pretrained function; A starts random (kaiming-uniform, like nn.Linear) so that B's gradient is non-zero.
- alpha / r scales the update: with alpha fixed, changing r does not change the update's initial size, so a
  learning rate tuned for one rank carries over. US-Tuning uses r=8, alpha=16 on q_proj and v_proj.
- Only A and B train: for Llama-2-7B that is 4.2M parameters instead of 6.7B, and the optimizer state
  shrinks with them. A and B are kept in fp32 even when W is bf16, so small updates are not rounded away.
- Stage 2 of US-Tuning trains a new LoRA on top of stage 1. By default the stage-1 adapter stays a frozen
  fp32 branch of the same LoRALinear (`freeze_lora`): y = x W^T + x dW1^T + x dW2^T. Merging it into bf16
  weights (`merge_lora`, what the authors did) rounds W + dW1 at W's scale, and a paper-length dW1 is below
  half of bf16's spacing for most entries: they do not change at all (README, "Stage 1 under stage 2").
- Merging (W += alpha/r * B @ A, every branch) is an explicit call, done in fp32 and cast once: for export,
  or for `train.py --merge-stage1`.

The frozen weight keeps the name `weight`, so `model.layers.0.self_attn.q_proj.weight` is the same key
with or without LoRA, and base checkpoints load either way. Adapters are saved in PEFT's format
(adapter_model.safetensors + adapter_config.json) so peft, vLLM and friends load them as they are.
"""
import dataclasses
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from files import read_json, write_file, write_text
from model import open_safetensors
from runs import read_lineage

# lm_head is a target PEFT knows too; the tiny world needs it (see train.py's tiny preset), Llama-2 does not.
SUPPORTED_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head")
PEFT_PREFIX = "base_model.model."  # peft wraps the model as PeftModel(base_model=LoraModel(model=...))


class AdapterError(ValueError):
    """An adapter we cannot use; the message names the file and the fix (scripts print it as one line)."""


class LoRALinear(nn.Module):
    """A frozen nn.Linear weight, one trainable LoRA (lora_A, lora_B; absent after freeze_adapter) and any
    number of earlier adapters kept as fixed fp32 branches (non-persistent buffers frozen_A<i>, frozen_B<i>:
    neither trained, nor saved with the adapter, nor part of the base checkpoint's keys)."""

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight  # frozen, under the name it had
        self.weight.requires_grad_(False)
        self.bias = base.bias
        self.frozen_scaling = []  # alpha/r of each frozen branch, in the order they were frozen
        self.add_adapter(r, alpha, dropout)

    def add_adapter(self, r, alpha, dropout=0.0):
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        kw = dict(bias=False, device=self.weight.device, dtype=torch.float32)
        self.lora_A = nn.Linear(self.in_features, r, **kw)  # its weight: r x in, kaiming-uniform(a=sqrt(5))
        self.lora_B = nn.Linear(r, self.out_features, **kw)
        nn.init.zeros_(self.lora_B.weight)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def freeze_adapter(self):
        """The trainable adapter becomes a fixed fp32 branch: its effect is kept exactly, W is not touched."""
        i = len(self.frozen_scaling)
        self.register_buffer(f"frozen_A{i}", self.lora_A.weight.detach().float(), persistent=False)
        self.register_buffer(f"frozen_B{i}", self.lora_B.weight.detach().float(), persistent=False)
        self.frozen_scaling.append(self.scaling)
        self.lora_A = self.lora_B = None
        self.lora_dropout = nn.Identity()

    def frozen(self):
        """(A, B, scaling) of every frozen branch, in the order they were frozen."""
        return [(getattr(self, f"frozen_A{i}"), getattr(self, f"frozen_B{i}"), s)
                for i, s in enumerate(self.frozen_scaling)]

    def branches(self):
        """The frozen branches, then the trainable adapter (if any)."""
        trainable = [(self.lora_A.weight, self.lora_B.weight, self.scaling)] if self.lora_A is not None else []
        return self.frozen() + trainable

    def forward(self, x):
        y = F.linear(x, self.weight, self.bias)
        # frozen branches: fp32 tensors at their own scale (autocast may run the matmuls in bf16), no dropout
        delta = sum(F.linear(F.linear(x.float(), a), b) * s for a, b, s in self.frozen())
        if self.lora_A is not None:
            a = self.lora_dropout(x).to(self.lora_A.weight.dtype)  # fp32 path (autocast may still run it in bf16)
            delta = delta + self.lora_B(self.lora_A(a)) * self.scaling
        return y + delta.to(y.dtype)

    def merged_weight(self):
        """W + the sum of every branch's alpha/r * B @ A, computed in fp32 and cast once to W's dtype."""
        w = self.weight.float()
        for a, b, s in self.branches():
            w = w + s * (b.float() @ a.float())
        return w.to(self.weight.dtype)


def lora_modules(model):
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def trainable_lora_modules(model):
    return {name: m for name, m in lora_modules(model).items() if m.lora_A is not None}


def lora_state_dict(model):
    return {k: v for k, v in model.state_dict().items() if ".lora_" in k}


def mark_only_lora_as_trainable(model):
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in name)


def _set_module(model, name, module):
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def apply_lora(model, targets=("q_proj", "v_proj"), r=8, alpha=16, dropout=0.0):
    """Swap every nn.Linear whose last name part is in `targets` for a LoRALinear; freeze everything else."""
    targets = tuple(targets)
    bad = [t for t in targets if t not in SUPPORTED_TARGETS]
    if bad:
        raise AdapterError(f"LoRA target {bad[0]!r} is not a Llama linear; choose from {', '.join(SUPPORTED_TARGETS)}")
    if trainable_lora_modules(model):
        raise AdapterError("the model already has a trainable LoRA; freeze_lora(model) or merge_lora(model) first "
                           "to stack a new adapter")
    names = [n for n, m in model.named_modules()
             if isinstance(m, (nn.Linear, LoRALinear)) and n.rpartition(".")[2] in targets]
    if not names:
        raise AdapterError(f"no linear layer named {targets} in the model")
    for name in names:
        m = model.get_submodule(name)
        if isinstance(m, LoRALinear):  # it carries frozen branches: the new adapter goes beside them
            m.add_adapter(r, alpha, dropout)
        else:
            _set_module(model, name, LoRALinear(m, r, alpha, dropout))
    mark_only_lora_as_trainable(model)
    model.lora_config = dict(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=sorted(targets))
    return model


def freeze_lora(model):
    """Keep the trainable adapter as a fixed fp32 branch of each layer (no rounding into W), ready for a new one."""
    for m in trainable_lora_modules(model).values():
        m.freeze_adapter()
    model.__dict__.pop("lora_config", None)
    return model


def merge_lora(model):
    """W += alpha/r * B @ A of every adapter (frozen branches and the trainable one) in fp32, cast once to W's
    dtype; LoRALinears become plain nn.Linears again. Exact in fp32 weights; in bf16 weights it rounds a small
    update away (README), so stacking uses freeze_lora unless asked (--merge-stage1)."""
    for name, m in lora_modules(model).items():
        linear = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None, device="meta")
        linear.weight = nn.Parameter(m.merged_weight().detach(), requires_grad=False)
        linear.bias = m.bias
        _set_module(model, name, linear)
        if name == "lm_head" and getattr(getattr(model, "args", None), "tie_word_embeddings", False):
            # the merged output layer is no longer the input embedding: untie it, or saving would drop it
            model.args = dataclasses.replace(model.args, tie_word_embeddings=False)
    model.__dict__.pop("lora_config", None)
    return model


# ---- PEFT-format files ----

def save_adapter(model, path, base_model_name_or_path=None):
    """adapter_model.safetensors (LoRA tensors only, peft's key names) + adapter_config.json (r, alpha, ...)."""
    if not trainable_lora_modules(model):
        raise AdapterError("the model has no trainable LoRA layers to save; call apply_lora first")
    os.makedirs(path, exist_ok=True)
    tensors = {PEFT_PREFIX + k: v.detach().contiguous() for k, v in lora_state_dict(model).items()}
    config = dict(peft_type="LORA", task_type="CAUSAL_LM", base_model_name_or_path=base_model_name_or_path,
                  **model.lora_config, bias="none", fan_in_fan_out=False, inference_mode=True,
                  init_lora_weights=True, use_rslora=False, use_dora=False, modules_to_save=None,
                  layers_to_transform=None, layers_pattern=None, rank_pattern={}, alpha_pattern={})
    write_text(os.path.join(path, "adapter_config.json"), json.dumps(config, indent=2))
    # the tensors last: train.py takes them for a finished run, and each file is whole or absent (write_file)
    write_file(os.path.join(path, "adapter_model.safetensors"),
               lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))


def read_adapter_config(path):
    file = os.path.join(path, "adapter_config.json")
    if not os.path.isfile(file):
        raise AdapterError(f"{file}: missing; point at a directory written by save_adapter or peft's save_pretrained")
    cfg = read_json(file, AdapterError, "a PEFT adapter_config.json")
    if not isinstance(cfg, dict):
        raise AdapterError(f"{file}: holds {type(cfg).__name__}, not an object of settings; re-save the adapter")
    unsupported = {"peft_type": lambda v: v != "LORA", "use_dora": bool, "use_rslora": bool,
                   "rank_pattern": bool, "alpha_pattern": bool, "modules_to_save": bool,
                   "layers_to_transform": lambda v: v is not None, "fan_in_fan_out": bool,
                   "bias": lambda v: v not in (None, "none"), "lora_bias": bool,
                   "target_modules": lambda v: not isinstance(v, list)}
    for field, is_bad in unsupported.items():
        if field in cfg and is_bad(cfg[field]):
            raise AdapterError(f"{file}: {field}={cfg[field]!r} is not supported (plain LoRA only: "
                               "peft_type LORA, a list of target_modules, no DoRA/rsLoRA/patterns/bias)")
    for field, ok, kind in (("r", lambda v: type(v) is int and v > 0, "a positive int"),
                            ("lora_alpha", lambda v: type(v) in (int, float) and v > 0, "a positive number"),
                            ("lora_dropout", lambda v: type(v) in (int, float) and 0 <= v < 1, "a number in [0, 1)"),
                            ("target_modules", lambda v: type(v) is list and all(type(t) is str for t in v),
                             "a list of module names")):
        if (field in cfg or field != "lora_dropout") and not ok(cfg.get(field)):  # only the dropout may be left out
            raise AdapterError(f"{file}: {field} is {cfg.get(field)!r}, not {kind}; fix or re-save the adapter")
    return cfg


def load_adapter(model, path):
    """Load a PEFT-format LoRA adapter (ours or peft's) into `model`, applying LoRA layers first if needed."""
    cfg = read_adapter_config(path)
    wanted = dict(r=cfg["r"], lora_alpha=cfg["lora_alpha"], lora_dropout=cfg.get("lora_dropout", 0.0),
                  target_modules=sorted(cfg["target_modules"]))
    if not trainable_lora_modules(model):
        apply_lora(model, wanted["target_modules"], wanted["r"], wanted["lora_alpha"], wanted["lora_dropout"])
    elif model.lora_config != wanted:
        raise AdapterError(f"{path}: adapter config {wanted} differs from the model's LoRA {model.lora_config}")
    file = os.path.join(path, "adapter_model.safetensors")
    if not os.path.isfile(file):
        raise AdapterError(f"{file}: missing; only safetensors adapters are supported (re-save with peft's "
                           "save_pretrained(safe_serialization=True))")
    params = dict(model.named_parameters())
    expected = set(lora_state_dict(model))
    seen = set()
    with open_safetensors(file, AdapterError) as f:
        for key in f.keys():
            name = key.removeprefix(PEFT_PREFIX).replace(".default.", ".")  # peft in memory names "default"
            if name not in expected:
                raise AdapterError(f"{file}: tensor {key!r} does not fit this model (no such LoRA layer); "
                                   "was the adapter trained on another base model?")
            t = f.get_tensor(key)
            if t.shape != params[name].shape:
                raise AdapterError(f"{file}: tensor {key!r} has shape {tuple(t.shape)}, the model's LoRA layer "
                                   f"needs {tuple(params[name].shape)}; the adapter belongs to another base model")
            with torch.no_grad():
                params[name].copy_(t)
            seen.add(name)
    if seen != expected:
        raise AdapterError(f"{file}: {len(expected - seen)} LoRA tensors missing, e.g. "
                           f"{sorted(expected - seen)[0]!r}; the file is incomplete")
    return model


def num_trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)



def stack_adapters(model, adapters, merge=False):
    """Put trained adapters under the next one, in order: each is loaded, then kept as a frozen fp32 branch
    (merge=False) or merged into the weights in their dtype (merge=True, the authors' stage 1 -> stage 2)."""
    for adapter in adapters:
        load_adapter(model, adapter)
        merge_lora(model) if merge else freeze_lora(model)
    return model


def load_trained(path, load_base, merge_first=True):
    """Rebuild exactly the model a training run produced: base -> each earlier adapter stacked as the run
    recorded (frozen branch or merged) -> this directory's adapter. `load_base(dir)` returns the base
    nn.Module. merge_first=False leaves the earlier adapters out (the authors' Llama-2 serving quirk: a
    stage-2 adapter on the plain base)."""
    lin = read_lineage(path)
    model = load_base(lin["base"])
    stack_adapters(model, lin["merged"] if merge_first else (), lin["merge"])
    if lin["adapter"]:
        load_adapter(model, path)
    return model, lin
