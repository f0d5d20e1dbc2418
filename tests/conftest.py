"""Shared fixtures: random tiny Llama checkpoints written by transformers itself (the reference)."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TINY = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, vocab_size=128, max_position_embeddings=256, rms_norm_eps=1e-6)


def make_hf_llama(path, seed=0, **overrides):
    """Save a randomly initialised transformers LlamaForCausalLM to `path`; return the model (eval, fp32)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = dict(TINY, **overrides)
    max_shard = cfg.pop("max_shard_size", None)
    model = LlamaForCausalLM(LlamaConfig(**cfg)).eval()
    with torch.no_grad():  # HF initialises norms to 1: perturb them so a norm bug cannot hide
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    kw = {"max_shard_size": max_shard} if max_shard else {}
    model.save_pretrained(path, **kw)
    return model


@pytest.fixture
def hf_llama(tmp_path):
    def make(**overrides):
        path = str(tmp_path / f"hf{len(os.listdir(tmp_path))}")
        return path, make_hf_llama(path, **overrides)
    return make


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory):
    """A small sentencepiece BPE model with Llama-2's special ids (unk 0, bos 1, eos 2, no pad)."""
    import sentencepiece as spm
    words = ("the answer is a passage about band painter city born formed founded when was who what "
             "question context sufficient insufficient not provided checking fulfilled").split()
    import random
    rng = random.Random(0)
    lines = [" ".join(rng.choice(words) for _ in range(12)) + f" {rng.randint(0, 3000)}." for _ in range(3000)]
    path = tmp_path_factory.mktemp("tok") / "tokenizer"
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=str(path), vocab_size=300,
                                   model_type="bpe", byte_fallback=True, unk_id=0, bos_id=1, eos_id=2,
                                   pad_id=-1, minloglevel=2, normalization_rule_name="identity",
                                   remove_extra_whitespaces=False)  # as Llama-2: newlines survive
    return str(path) + ".model"


@pytest.fixture(scope="session")
def micro_world(tmp_path_factory):
    """A micro tiny-world (raw files) and a stage-0 base trained on it in seconds: {"dir", "asqa", ...}."""
    import tinyworld
    import train
    root = tmp_path_factory.mktemp("micro")
    files = tinyworld.write(str(root / "data"), seed=1, names=40, asqa_names=12, hotpot_items=40,
                            corpus_draws=60)
    base = str(root / "out" / "base")
    train.main(["--stage", "0", "--preset", "micro", "--base-corpus", files["base_corpus.jsonl"],
                "--whole-words", files["world_words.txt"], "--out", base])
    return dict(root=str(root), base=base, asqa=files["ASQA.json"], hotpot=files["hotpot_train_v1.1.json"])


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: over ~20 s: SmolLM2 (needs models/SmolLM2-135M-Instruct from "
                                       "tools/get_smollm2.py, skipped without it), inductor compiling; deselect "
                                       "with -m 'not slow'")
