"""Data parallelism (torchrun) for train.py, in three pieces: the process group, each rank's share of a
global batch, and one all-reduce of the gradients. One process is the same code with world 1.
"""
import math
import os

import torch
import torch.distributed as dist


def setup_distributed():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def even_split(xs, parts):
    """xs in `parts` contiguous pieces whose sizes differ by at most one."""
    return [xs[i * len(xs) // parts:(i + 1) * len(xs) // parts] for i in range(parts)]


def rank_share(samples, rank, world, micro_batch):
    """This rank's micro-batches of `samples` (a global batch, or the validation set). Ranks split samples, not
    micro-batches: with more ranks than micro-batches none idles (a 4-sample batch on 4 ranks: one each). The
    loss stays normalised by the answer tokens of all `samples`, so the sum over ranks is the one-process
    gradient, however they are split. A rank's share is cut into as few micro-batches of <= micro_batch as
    possible, of even sizes."""
    mine = even_split(samples, world)[rank]
    return even_split(mine, math.ceil(len(mine) / micro_batch)) if mine else []


def all_reduce_sum(params, loss):
    """Sum the gradients and the loss of every rank in one all-reduce of one flat fp32 buffer (not one call per
    LoRA tensor: 128 for Llama-2-7B's q,v). A rank without samples adds zeros. Returns the summed loss."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.flatten().float() for g in grads] + [loss.reshape(1).float()])
    dist.all_reduce(flat)
    for p, g in zip(params, flat[:-1].split([p.numel() for p in params])):
        p.grad = g.view_as(p).to(p.dtype)
    return flat[-1]
