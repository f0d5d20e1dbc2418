"""How much of a LoRA update survives a merge into bf16 weights, against keeping it as a frozen fp32 branch.

    python tools/merge_error.py --adapter /tmp/branch_s1      # (a) tiny/base in bf16 + a stage-1 adapter
    python tools/merge_error.py --synthetic                   # (b) Llama-2-7B-shaped layers, bf16 W ~ N(0, 0.02)

Per adapted layer, W is the bf16 weight and dW = alpha/r * B @ A the adapter's update in fp32. A merge stores
bf16(W + dW); an entry whose update is under half of bf16's spacing at |W| (2^-9 |W| or less) stays W. Printed:
- unchanged: the share of W's entries that the merge leaves bit-identical (the update is lost there);
- merge error: ||bf16(W + dW) - W - dW|| / ||dW|| over all adapted layers (0 = the update kept exactly);
- branch error: the same for the frozen fp32 branch when bf16 autocast rounds A and B at their own scale
  (the branch's tensors stay fp32; 0 in fp32 compute);
- (a) only: the max |logit| difference on the tiny world's stage-1 prompts between the branch and the merged
  model (bf16 weights under bf16 autocast, as on a GPU); each against the fp32 reference (the bf16 weights
  read exactly in fp32 plus the fp32 adapter), against the unmerged trainable adapter in the same precision
  (what stage 1 computed while training on a GPU), and, with the same weights computed in fp32, against the
  fp32 reference again (the error of the weights alone, without bf16's compute noise).
"""
import os
import sys
from dataclasses import dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import lora  # noqa: E402
import tinyworld  # noqa: E402
from cli import config_parser  # noqa: E402
from model import Llama  # noqa: E402


@dataclass
class MergeErrorConfig:
    model: str = tinyworld.BASE  # (a) the base checkpoint
    adapter: str = "out/stage1"  # (a) a stage-1 adapter trained on --model
    asqa: str = os.path.join(tinyworld.DATA, "ASQA.json")  # (a) where the stage-1 prompts come from
    prompts: int = 8  # (a) stage-1 prompts whose logits are compared
    scale: float = 1.0  # (a) multiply the adapter's B by this; 0.0133 = 4e-5 / 3e-3, the paper's stage-1 lr over the tiny preset's
    synthetic: bool = False  # (b) instead of (a): Llama-2-7B-shaped layers with a random r-8 LoRA
    targets: str = "q_proj,v_proj"  # (b) the layers (q_proj,v_proj: 4096x4096; gate/up/down_proj: 11008x4096)
    ratios: str = "0.15,0.005,0.001"  # (b) ||dW|| / ||W|| of the synthetic update, one row each (README: where each comes from)
    seed: int = 0  # (b) the draws of W, A and B


def weight_errors(pairs):
    """pairs: (W bf16, [(A, B, scaling)]) per layer -> (unchanged share, merge error, branch error, ||dW||/||W||)."""
    same = numel = merge_sq = branch_sq = delta_sq = w_sq = 0.0
    for w, branches in pairs:
        delta = sum(s * (b.float() @ a.float()) for a, b, s in branches)
        merged = (w.float() + delta).to(torch.bfloat16)
        rounded = sum(s * (b.bfloat16().float() @ a.bfloat16().float()) for a, b, s in branches)
        same += (merged == w).sum().item()
        numel += w.numel()
        merge_sq += (merged.float() - w.float() - delta).norm().item() ** 2
        branch_sq += (rounded - delta).norm().item() ** 2
        delta_sq += delta.norm().item() ** 2
        w_sq += w.float().norm().item() ** 2
    return same / numel, (merge_sq / delta_sq) ** 0.5, (branch_sq / delta_sq) ** 0.5, (delta_sq / w_sq) ** 0.5


def tiny(cfg):
    def load():
        model = lora.load_adapter(Llama.from_pretrained(cfg.model, dtype=torch.bfloat16), cfg.adapter)
        with torch.no_grad():
            for m in lora.lora_modules(model).values():
                m.lora_B.weight.mul_(cfg.scale)
        return model
    branch, merged = lora.freeze_lora(load()), lora.merge_lora(load())
    ref = load().float()  # the bf16 weights exactly, fp32 adapter, fp32 compute
    # the same bf16 weights computed in fp32 (an exact copy): the error of the weights alone, without bf16 compute
    branch32, merged32 = lora.freeze_lora(load()).float(), lora.merge_lora(load()).float()
    base32 = Llama.from_pretrained(cfg.model, dtype=torch.bfloat16).float()  # no adapter: the update's own size
    pairs = [(m.weight, m.frozen()) for m in lora.lora_modules(branch).values()]
    unchanged, merge_err, branch_err, ratio = weight_errors(pairs)
    per_layer = sorted(weight_errors([p])[3] for p in pairs)
    print(f"(a) {cfg.model} in bf16 + {cfg.adapter} (B x {cfg.scale:g}): {len(pairs)} adapted layers, ||dW||/||W|| {ratio:.4f} overall "
          f"(per layer median {per_layer[len(per_layer) // 2]:.4f}, range {per_layer[0]:.4f}-{per_layer[-1]:.4f})")
    print(f"    merge into bf16: {100 * unchanged:.1f}% of the weights unchanged, error of the update {merge_err:.3f}")
    print(f"    frozen fp32 branch: error of the update {branch_err:.4f} under bf16 autocast, 0 in fp32 compute")
    tok = data.Tokenizer(cfg.model)
    rows = [r for r in data.build_benchmark(cfg.asqa) if r["split"] == "test"][:(cfg.prompts + 1) // 2]
    prompts = [data.encode_chat(tok, data.cognition_prompt(r[k + "_question"], r["context"]))[0]
               for r in rows for k in ("known", "unknown")][:cfg.prompts]
    trained = load()  # the adapter unmerged and trainable: the function stage 1 computed while it trained
    worst = dict.fromkeys(("branch-merged", "branch-ref", "merged-ref", "branch-ref32", "merged-ref32", "effect",
                           "branch-trained", "merged-trained"), 0.0)
    agree = {"branch": 0, "merged": 0}
    with torch.no_grad():
        for ids in prompts:
            x = torch.tensor([ids])
            want = ref(x)
            worst["effect"] = max(worst["effect"], (want - base32(x)).abs().max().item())
            with torch.autocast("cpu", dtype=torch.bfloat16):
                got = {"branch": branch(x).float(), "merged": merged(x).float(), "trained": trained(x).float()}
            worst["branch-merged"] = max(worst["branch-merged"], (got["branch"] - got["merged"]).abs().max().item())
            for k, m32 in (("branch", branch32), ("merged", merged32)):
                worst[f"{k}-ref"] = max(worst[f"{k}-ref"], (got[k] - want).abs().max().item())
                worst[f"{k}-trained"] = max(worst[f"{k}-trained"], (got[k] - got["trained"]).abs().max().item())
                worst[f"{k}-ref32"] = max(worst[f"{k}-ref32"], (m32(x) - want).abs().max().item())
                agree[k] += got[k][0, -1].argmax().item() == want[0, -1].argmax().item()
    print(f"    max |logit difference| over {len(prompts)} stage-1 prompts (all positions; bf16 weights, bf16 "
          f"autocast): branch vs merged {worst['branch-merged']:.3f}; vs the fp32 reference: branch "
          f"{worst['branch-ref']:.3f}, merged {worst['merged-ref']:.3f}; next token as the reference's: branch "
          f"{agree['branch']}/{len(prompts)}, merged {agree['merged']}/{len(prompts)}")
    print(f"    vs the unmerged trainable adapter in the same precision (the model as stage 1 trained it): branch "
          f"{worst['branch-trained']:.4f}, merged {worst['merged-trained']:.3f}")
    print(f"    the same weights computed in fp32, vs the fp32 reference: branch {worst['branch-ref32']:.4f}, merged "
          f"{worst['merged-ref32']:.4f} (the adapter's own effect on them: {worst['effect']:.3f})")


SHAPES = {"q_proj": (4096, 4096), "k_proj": (4096, 4096), "v_proj": (4096, 4096), "o_proj": (4096, 4096),
          "gate_proj": (11008, 4096), "up_proj": (11008, 4096), "down_proj": (4096, 11008)}


def synthetic(cfg):
    """A trained LoRA's A stays near its kaiming-uniform start (bound 1/sqrt(in)) while B grows from zero: draw A
    that way, B Gaussian, and scale B so that ||dW|| / ||W|| is the ratio asked for."""
    g = torch.Generator().manual_seed(cfg.seed)
    r, scaling = 8, 2.0  # the paper's r 8, alpha 16
    layers = []
    for name in cfg.targets.split(","):
        out_f, in_f = SHAPES[name]
        w = (torch.randn(out_f, in_f, generator=g) * 0.02).to(torch.bfloat16)
        a = (torch.rand(r, in_f, generator=g) * 2 - 1) / in_f ** 0.5
        b = torch.randn(out_f, r, generator=g)
        layers.append((name, w, a, b))
    print(f"(b) Llama-2-7B-shaped {cfg.targets} (bf16 W ~ N(0, 0.02)), LoRA r {r}, alpha 16:")
    for ratio in (float(x) for x in cfg.ratios.split(",")):
        pairs = []
        for name, w, a, b in layers:
            norm = (scaling * b @ a).norm() / w.float().norm()
            pairs.append((w, [(a, b * (ratio / norm), scaling)]))
        unchanged, merge_err, branch_err, got = weight_errors(pairs)
        print(f"    ||dW||/||W|| {got:.4f} (rms of dW {0.02 * got:.1e}): merge into bf16 leaves {100 * unchanged:.1f}% "
              f"of the weights unchanged, error of the update {merge_err:.3f}; fp32 branch under bf16 autocast "
              f"{branch_err:.4f}")


def main(argv=None):
    cfg = MergeErrorConfig(**vars(config_parser(MergeErrorConfig, __doc__).parse_args(argv)))
    bad = [t for t in cfg.targets.split(",") if t not in SHAPES]
    if bad:
        sys.exit(f"error: --targets {bad[0]!r} is not a Llama linear; choose from {', '.join(SHAPES)}")
    if cfg.synthetic:
        return synthetic(cfg)
    if not os.path.isfile(os.path.join(cfg.adapter, "adapter_config.json")):
        sys.exit(f"error: {cfg.adapter}: no adapter_config.json; train one first (python train.py --stage 1 --out "
                 f"{cfg.adapter} --max-steps 60) or pass --adapter DIR")
    torch.manual_seed(0)
    tiny(cfg)


if __name__ == "__main__":
    main()
