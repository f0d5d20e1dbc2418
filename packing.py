"""Packed attention: rows of different lengths in one sequence, no padding, and a prompt prefix that several
rows share computed once. Llama.loss() (training) and generate.py (prefill) use it; the result is the same
as the padded batch's, to rounding (tests/test_model.py).

A worked example. Three prompts, S the 4 tokens of a template's instructions that rows 0 and 1 share:

    row 0:  S S S S a b        6 tokens
    row 1:  S S S S c          5 tokens   shares its first 4 with row 0 (its leader)
    row 2:  x y z              3 tokens   shares nothing

shared_prefixes gives [(0, 0), (0, 4), (2, 0)]: (leader, shared length) per row. The packed sequence holds
each row's own tokens only, row after row, positions restarting at 0 in each row:

    packed:    S S S S a b | c | x y z         N = 10 tokens, not 3 x 6 = 18 padded
    position:  0 1 2 3 4 5 | 4 | 0 1 2

Every layer projects the 10 packed tokens, then attends in two groups (RowGroup): the leaders, rows 0 and 2,
whole rows under a plain causal mask; then the followers, row 1, whose keys are row 0's packed tokens 0-3
followed by its own token c, and whose only query is c (position 4 sees keys 0-4). In the last block only
the positions that carry a label (training) or the last prompt token (decoding) are queried: `queries`.
"""
import torch
import torch.nn.functional as F


def shared_prefixes(rows, min_shared=16):
    """For token rows (lists of ids): (leader, length) per row: the row's first `length` tokens equal those of
    an earlier row, its leader, which computes them (a leader shares nothing: (itself, 0)). A prompt
    template's instructions are the same tokens in every prompt (the tiny world's stage-1 samples share 200
    of their ~250 tokens). Shares shorter than min_shared tokens are not worth a row of their own; a row
    keeps at least its last token."""
    leaders, out = [], []
    for b, row in enumerate(rows):
        best, length = b, 0
        for g in leaders:
            n, cap = 0, min(len(row) - 1, len(rows[g]))
            while n < cap and row[n] == rows[g][n]:
                n += 1
            if n > length:
                best, length = g, n
        if length < min_shared:
            best, length = b, 0
            leaders.append(b)
        out.append((best, length))
    return out


class RowGroup:
    """Rows attended together in one SDPA call, keys laid out right-padded (rows, longest row): kv (packed
    index of each key, None: the packed tokens in order), kv_rows (row within the group), kv_slots."""

    def __init__(self, rows, lengths, index, n_packed, device):
        self.rows = rows
        lens = lengths[rows]
        local = torch.repeat_interleave(torch.arange(len(rows)), lens)
        self.kv_slots = torch.arange(int(lens.sum())) - (lens.cumsum(0) - lens)[local]
        kv = index(rows[local], self.kv_slots)
        self.kv = None if torch.equal(kv, torch.arange(n_packed)) else kv.to(device)
        self.shape = (len(rows), int(lens.max()))
        self.kv_rows, self.kv_slots = local.to(device), self.kv_slots.to(device)


class GroupQueries:
    """The queries of one group: sel (which of the layer's queries; None: all), each one's row in the group
    and slot in the right-padded (rows, queries per row) layout, and the mask (None: plain causal)."""

    def __init__(self, sel, rows, pos, shape_rows, keys, device, causal):
        counts = torch.bincount(rows, minlength=shape_rows)
        slots = torch.arange(len(rows)) - (counts.cumsum(0) - counts)[rows]
        self.shape = (shape_rows, int(counts.max()))
        self.mask = None
        if not causal:  # query at position p sees keys 0..p of its row; a padding query sees key 0 (no empty softmax)
            qpos = torch.zeros(self.shape, dtype=torch.long)
            qpos[rows, slots] = pos
            self.mask = (torch.arange(keys)[None, None, :] <= qpos[:, :, None])[:, None].to(device)
        self.sel = None if sel is None else sel.to(device)
        self.rows, self.slots = rows.to(device), slots.to(device)


class Queries:
    """Where a layer's queries are: packed indices `idx` (None: every packed token, in order), split by the
    packing's groups (GroupQueries per group, None where a group has none); `order` puts the groups' outputs back."""

    def __init__(self, idx, rows, pos, pack, device, own_tokens=False):
        self.idx = None if idx is None else idx.to(device)
        self.groups, sels = [], []
        for group in pack.groups:
            where = torch.isin(rows, group.rows)
            sel = where.nonzero()[:, 0]
            if not len(sel):
                self.groups.append(None)
                continue
            local = torch.searchsorted(group.rows, rows[sel])  # group.rows is sorted
            causal = own_tokens and bool((pack.skip[group.rows] == 0).all())  # whole rows from position 0
            all_sel = len(pack.groups) == 1
            self.groups.append(GroupQueries(None if all_sel else sel, local, pos[sel], len(group.rows),
                                            group.shape[1], device, causal))
            sels.append(sel)
        self.order = torch.argsort(torch.cat(sels)).to(device) if len(sels) > 1 else None


class Packing:
    """Rows of different lengths packed into one sequence: no padding, and a prefix a row shares with an
    earlier row (shared_prefixes) computed once. lengths: tokens per row; shared: (leader, length) per row
    (None: nothing shared); queries: (row, position) pairs, sorted, whose outputs the last block must produce
    (None: every packed token). The packed tokens are each row's own tokens, row after row: take them from a
    (rows, T) tensor as tokens[pack.src_rows, pack.src_pos]. Positions restart at 0 in each row. Attention
    runs in groups (RowGroup): the leaders, whole rows, then the rows that share a prefix, their queries few,
    so that neither pads its queries to the other's. With cache_len, cache_slots place each row's keys and
    values in a left-padded KV cache of cache_len slots."""

    def __init__(self, lengths, shared=None, queries=None, device="cpu", cache_len=None):
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        B = len(lengths)
        shared = shared or [(b, 0) for b in range(B)]
        lead = torch.tensor([g for g, _ in shared])
        self.skip = skip = torch.tensor([n for _, n in shared])
        own = lengths - skip
        own_start = own.cumsum(0) - own
        self.shape = (B, int(lengths.max()))
        self.src_rows = torch.repeat_interleave(torch.arange(B), own)
        self.src_pos = torch.arange(int(own.sum())) - own_start[self.src_rows] + skip[self.src_rows]

        def index(rows, pos):  # packed index of (row, position): a shared position is its leader's token
            theirs = pos < skip[rows]
            rows = torch.where(theirs, lead[rows], rows)
            return own_start[rows] + pos - skip[rows]
        followers = (skip > 0).nonzero()[:, 0]
        N = int(own.sum())
        self.groups = [RowGroup(torch.arange(B), lengths, index, N, device)] if not len(followers) else [
            RowGroup((skip == 0).nonzero()[:, 0], lengths, index, N, device),
            RowGroup(followers, lengths, index, N, device)]
        kv_rows = torch.repeat_interleave(torch.arange(B), lengths)
        kv_slots = torch.arange(int(lengths.sum())) - (lengths.cumsum(0) - lengths)[kv_rows]
        self.kv_src = index(kv_rows, kv_slots).to(device) if len(followers) else None
        self.kv_rows = kv_rows.to(device)
        self.positions = self.src_pos.to(device)[None]
        self.all = Queries(None, self.src_rows, self.src_pos, self, device, own_tokens=True)
        self.out = self.all
        if queries is not None:
            queries = torch.as_tensor(queries, dtype=torch.long).cpu().view(-1, 2)
            self.out = Queries(index(queries[:, 0], queries[:, 1]), queries[:, 0], queries[:, 1], self, device)
        if cache_len is not None:  # row r's tokens fill slots cache_len - length .. cache_len - 1
            self.cache_slots = (kv_slots + cache_len - lengths[kv_rows]).to(device)


def attend(q, k, v, pack: Packing, ql: Queries, cache=None):
    """Attention of the queries q (n, heads, head_dim) at ql over the keys and values k, v (N, kv heads,
    head_dim) of every packed token; returns (n, heads, head_dim). Each group runs batched (one SDPA call: CPU
    kernels pay a large fixed cost per call) on its rows' keys laid out right-padded, a follower's shared
    prefix read from its leader's tokens. A KV cache, if given, receives each row's keys and values at its
    left-padded slots."""
    n_heads, n_kv, head_dim = q.shape[1], k.shape[1], k.shape[2]
    if cache is not None:  # every row's tokens, shared prefixes included
        kc, vc = (k, v) if pack.kv_src is None else (k[pack.kv_src], v[pack.kv_src])
        cache.k[pack.kv_rows, :, pack.cache_slots] = kc.to(cache.k.dtype)
        cache.v[pack.kv_rows, :, pack.cache_slots] = vc.to(cache.v.dtype)
    ys = []
    for group, at in zip(pack.groups, ql.groups):  # leaders, then the rows that share
        if at is None:
            continue
        kg, vg = (k, v) if group.kv is None else (k[group.kv], v[group.kv])
        kp = k.new_zeros(group.shape[0], n_kv, group.shape[1], head_dim)
        kp[group.kv_rows, :, group.kv_slots] = kg
        vp = v.new_zeros(group.shape[0], n_kv, group.shape[1], head_dim)
        vp[group.kv_rows, :, group.kv_slots] = vg
        if n_kv != n_heads:
            kp = kp.repeat_interleave(n_heads // n_kv, dim=1)
            vp = vp.repeat_interleave(n_heads // n_kv, dim=1)
        qp = q.new_zeros(group.shape[0], n_heads, at.shape[1], head_dim)
        qg = q if at.sel is None else q[at.sel]
        qp[at.rows, :, at.slots] = qg
        if at.mask is None:  # a row's every token, from position 0: plain causal attention
            y = F.scaled_dot_product_attention(qp, kp, vp, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=at.mask)
        ys.append(y[at.rows, :, at.slots])
    return ys[0] if len(ys) == 1 else torch.cat(ys)[ql.order]
