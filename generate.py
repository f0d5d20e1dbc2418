"""Batched greedy decoding with a preallocated KV cache, as eval.py answers its prompts.

    new_tokens = generate(model, [ids1, ids2], max_new_tokens=200, eos_id=2)

A batch is prefilled packed (packing.py: no padding, a shared prompt prefix computed once) into a
left-padded cache (Llama.setup_caches), then decoded one token a step for every row still running.
"""
import torch
from tqdm import tqdm

from model import Llama
from packing import Packing, shared_prefixes


def token_batches(lengths, max_new_tokens, batch_tokens):
    """Prompt indices in batches, shortest prompts first, so that a batch pads little: B prompts whose longest
    has P tokens fill B * (P + max_new_tokens) <= batch_tokens slots of the KV cache (what _generate_batch
    allocates, padding included). A prompt over the budget alone still gets a batch of its own."""
    batches = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        # sorted ascending: the newcomer is the batch's longest prompt, so it sets every row's cache length
        if batches and (len(batches[-1]) + 1) * (lengths[i] + max_new_tokens) <= batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@torch.no_grad()
def generate(model: Llama, prompts, max_new_tokens, eos_id, batch_size=16, progress=False, autocast=False,
             batch_tokens=0, eos_every=None):
    """Greedy-decode each prompt (a list of token ids) and return only its new tokens, without the EOS.
    autocast=True runs under bf16 autocast with a bf16 KV cache (resolve_device says when).

    Prompts are sorted by length and run in batches of batch_size prompts, or, with batch_tokens, of a KV
    cache of at most batch_tokens slots (token_batches). The prompts of a batch are prefilled packed, without
    padding (Packing), into a left-padded KV cache; each row's positions start at 0 at its first real token
    and padding is masked out of attention, so every row gets exactly the tokens that decoding it alone,
    step by step and without a cache, would give. A row whose output has max_new_tokens tokens was cut off
    by the limit (it never produced EOS).
    Which rows have ended is asked every eos_every steps (default: every step on the CPU, every 8 on a GPU,
    where the question waits for the device); ended rows then leave the batch (their cache rows are dropped),
    and the steps a row runs past its EOS are discarded."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    batches = (token_batches([len(p) for p in prompts], max_new_tokens, batch_tokens) if batch_tokens else
               [order[i:i + batch_size] for i in range(0, len(order), batch_size)])
    if eos_every is None:
        eos_every = 1 if model.lm_head.weight.device.type == "cpu" else 8
    out = [None] * len(prompts)
    for idx in tqdm(batches, desc="generate", disable=not progress):
        with torch.autocast(model.lm_head.weight.device.type, dtype=torch.bfloat16, enabled=autocast):
            for i, toks in zip(idx, _generate_batch(model, [prompts[i] for i in idx], max_new_tokens, eos_id,
                                                    eos_every)):
                out[i] = toks
    return out


def _generate_batch(model, prompts, max_new_tokens, eos_id, eos_every=8):
    device = model.lm_head.weight.device
    dtype = torch.bfloat16 if torch.is_autocast_enabled(device.type) else model.model.embed_tokens.weight.dtype
    B, P = len(prompts), max(len(p) for p in prompts)
    total = P + max_new_tokens
    if total > model.args.max_position_embeddings:
        raise ValueError(f"prompt of {P} tokens + {max_new_tokens} new tokens exceeds the model's "
                         f"max_position_embeddings {model.args.max_position_embeddings}")
    lengths = [len(p) for p in prompts]
    pad = torch.tensor([P - n for n in lengths], device=device)
    model.setup_caches(B, total, dtype, device, zeroed=P - min(lengths))  # slots past the prompts: written first
    idx = torch.arange(total, device=device)
    valid = idx[None, :] >= pad[:, None]  # valid[b, k]: cache slot k holds a real token of row b
    positions = (idx[None, :] - pad[:, None]).clamp(min=0)
    was_training = model.training
    model.eval()
    try:
        shared = shared_prefixes(prompts) if model.share_prefixes else None
        pack = Packing(lengths, shared, [(b, n - 1) for b, n in enumerate(lengths)], device, cache_len=P)
        tokens = torch.tensor([list(p) + [0] * (P - len(p)) for p in prompts], device=device)
        tokens = tokens[pack.src_rows.to(device), pack.src_pos.to(device)][None]
        logits = model(tokens, packing=pack).transpose(0, 1)  # (B, 1, vocab): each row's last prompt token
        rows = torch.arange(B, device=device)  # the original row of each row still decoding
        new, done = [], torch.zeros(B, dtype=torch.bool, device=device)
        for t in range(P, total):
            nxt = logits[:, -1].argmax(-1)
            new.append((rows, nxt))
            done |= nxt == eos_id
            if t == total - 1:
                break
            if len(new) % eos_every == 0:
                ended = int(done.sum())  # waits for the device
                if ended == len(done):
                    break
                if ended >= max(1, len(done) // 4):  # ended rows leave the batch, a quarter at least at a time
                    live = (~done).nonzero()[:, 0]
                    model.keep_cache_rows(live, t)
                    rows, nxt, done = rows[live], nxt[live], done[live]
                    valid, positions = valid[live], positions[live]
            mask = valid[:, None, None, : t + 1]
            logits = model(nxt[:, None], positions=positions[:, t:t + 1], mask=mask, start=t, last_only=True)
    finally:
        model.drop_caches()
        model.train(was_training)
    out = torch.full((B, len(new)), eos_id, dtype=torch.long, device=device)
    for s, (r, nxt) in enumerate(new):
        out[r, s] = nxt
    rows = out.tolist()
    return [r[:r.index(eos_id)] if eos_id in r else r for r in rows]
