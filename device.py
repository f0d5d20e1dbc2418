"""Where and in which precision a script runs: --device and --dtype resolved once, the same way for train.py,
eval.py and bench.py."""
import torch


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls run natively (3.3x fp32's speed measured on such a CPU); without
    them bf16 is emulated and slower than fp32."""
    cpu = torch.cpu
    return any(getattr(cpu, f, lambda: False)() for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def resolve_device(device="auto", dtype="auto"):
    """The scripts' --device/--dtype -> (device, weight dtype, bf16 autocast on/off, why, in words).
    auto: CUDA keeps bf16 weights under bf16 autocast; a CPU with native bf16 keeps fp32 weights (and fp32
    LoRA / master weights) under bf16 autocast; any other CPU runs plain fp32. float32 turns autocast off."""
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    if dtype not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"--dtype must be auto, float32 or bfloat16, not {dtype!r}")
    if dtype == "float32":
        return dev, torch.float32, False, "float32 (asked for)"
    if dtype == "bfloat16":
        return dev, torch.bfloat16, True, "bf16 weights, bf16 autocast (asked for)"
    if dev.type == "cuda":
        return dev, torch.bfloat16, True, "auto: CUDA -> bf16 weights, bf16 autocast"
    if dev.type == "cpu" and cpu_has_native_bf16():
        return dev, torch.float32, True, "auto: this CPU computes bf16 natively -> fp32 weights, bf16 autocast"
    return dev, torch.float32, False, f"auto: {dev.type} without native bf16 -> float32"
