"""--compile (Llama.compile_blocks): the compiled blocks compute what the eager ones do, and a run with batches
of every shape compiles two graphs (with and without grad), far below dynamo's limit of 8 per code object."""
import copy

import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounterWithBackend

import lora
from model import Llama, ModelArgs

# (batch, sequence length) of successive micro-batches: lengths vary every time, and a one-sample micro-batch
# (an epoch's last) comes both first and in the middle.
SHAPES = [(1, 9), (2, 10), (2, 17), (3, 23), (1, 12), (4, 30), (2, 41)]


def tiny_lora_model():
    torch.manual_seed(0)
    model = Llama(ModelArgs(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, vocab_size=128, max_position_embeddings=256))
    lora.apply_lora(model, ("q_proj", "v_proj", "down_proj"), r=4, alpha=8)
    with torch.no_grad():
        for k, p in model.named_parameters():
            if "lora_B" in k:
                p.normal_(0, 0.1)  # B = 0 would hide a wrong LoRA gradient
    return model.train()


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_blocks_match_eager_with_two_graphs_for_every_shape(backend):
    """aot_eager runs dynamo and AOTAutograd (the guards, the joint graph: where the graph count is decided)
    in seconds; inductor also generates and compiles C++ (46 s here on 2 shared cores, cold cache: slow)."""
    torch._dynamo.reset()
    eager = tiny_lora_model()
    compiled = copy.deepcopy(eager)
    eager.packed = False  # the padded batch, as the compiled blocks run it (Llama.loss)
    counter = CompileCounterWithBackend(backend)
    compiled.compile_blocks(backend=counter)
    g = torch.Generator().manual_seed(1)
    tol = 0 if backend == "aot_eager" else 1e-5
    try:
        for B, T in SHAPES:
            tokens = torch.randint(0, 128, (B, T), generator=g)
            labels = tokens.clone()
            labels[:, : T // 2] = -100
            losses, grads = [], []
            for model in (eager, compiled):
                model.zero_grad(set_to_none=True)
                loss = model.loss(tokens, labels, reduction="sum")
                loss.backward()
                losses.append(loss.item())
                grads.append({k: p.grad for k, p in model.named_parameters() if p.requires_grad})
            assert abs(losses[0] - losses[1]) <= tol * abs(losses[0]), (B, T)
            assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 12
            for k in grads[0]:
                assert (grads[0][k] - grads[1][k]).abs().max().item() <= tol, (B, T, k)
        assert counter.frame_count == 1  # one graph for every training micro-batch of both blocks
        with torch.no_grad():  # validation: grad mode is part of a graph's guards
            for B, T in SHAPES[:3]:
                tokens = torch.randint(0, 128, (B, T), generator=g)
                a, b = (m.loss(tokens, tokens).item() for m in (eager, compiled))
                assert abs(a - b) <= tol * abs(a)
        assert counter.frame_count == 2
    finally:
        torch._dynamo.reset()


def test_compile_blocks_changes_no_gradient_of_a_trainable_embedding():
    """Stage 0 trains the embedding: its output already needs grad, and compiled or not the gradients agree."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = Llama(ModelArgs(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                            num_key_value_heads=2, vocab_size=64, max_position_embeddings=64,
                            tie_word_embeddings=True))
    compiled = copy.deepcopy(eager)
    compiled.lm_head.weight = compiled.model.embed_tokens.weight  # deepcopy keeps the tie; say it anyway
    compiled.compile_blocks(backend="aot_eager")
    tokens = torch.randint(0, 64, (3, 11))
    try:
        for model in (eager, compiled):
            model.loss(tokens, tokens).backward()
        for (k, a), b in zip(eager.named_parameters(), compiled.parameters()):
            assert (a.grad - b.grad).abs().max().item() <= 1e-6, k
    finally:
        torch._dynamo.reset()
