"""Gather-sparse attention: gather each query group's selected keys, then dense attention on them.

Per query group the selected key positions are listed, de-duplicated (a repeated block or an
overlap of spans counts once, as in the reference's boolean mask) and the keys and values are
gathered with ``index_select`` on flattened rows (whole blocks for the block form). Query groups are
processed in slices so that at most ``GATHER_BUDGET`` gathered key elements exist at once: memory
O(B·H·G·S·span·D) bounded by the budget, and the L x L score matrix never exists.

When the selection is not sparse (``S·span`` at least half the keys), gathering costs more than it
saves; the backend then runs masked dense attention through torch SDPA instead. The choice depends
on shapes only, so torch.compile sees a static graph.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..softmax.sdpa import softmax_attention_sdpa
from .naive import blocks_to_spans, check_selection, selection_mask

GATHER_BUDGET = 2**20  # gathered key elements alive at once (4 MiB in float32): small slices reuse
# allocator memory instead of page-faulting fresh buffers, which made larger slices 3x slower on CPU
DENSE_FRACTION = 0.5  # selections covering at least this fraction of the keys run dense


def _dense(q, k, v, starts, lengths, *, query_block_size, causal, scale) -> Tensor:
    visible = selection_mask(starts, lengths, q.shape[2], k.shape[2], query_block_size)
    return softmax_attention_sdpa(q, k, v, attn_mask=visible, causal=causal, scale=scale)


def _attend(queries, keys, values, key_pos, valid, *, group_start, query_block_size, lq, lk, causal, scale):
    """Attention of query groups (B,H,g,Qb,D) over their gathered keys (B,H,g,N,D)."""
    scores = torch.matmul(queries, keys.transpose(-1, -2)) * scale  # (B, H, g, Qb, N)
    visible = valid.unsqueeze(-2)
    if causal:
        groups = queries.shape[2]
        first = group_start * query_block_size
        query_pos = torch.arange(first, first + groups * query_block_size, device=queries.device)
        query_pos = query_pos.view(groups, query_block_size, 1)
        visible = visible & (key_pos.unsqueeze(-2) <= query_pos + (lk - lq))
    visible = visible.expand_as(scores)
    empty_row = ~visible.any(dim=-1, keepdim=True)
    scores = scores.masked_fill(~visible & ~empty_row, float("-inf"))
    weights = torch.softmax(scores, dim=-1).masked_fill(empty_row, 0.0)
    return torch.matmul(weights, values)


def _row_offsets(q: Tensor, kv_heads: int, rows_per_head: int) -> Tensor:
    """(B, H, 1, 1) offset of each query head's key/value head in a (B·Hkv·rows, ...) flattening (GQA)."""
    batch, heads = q.shape[:2]
    kv_head = torch.arange(heads, device=q.device) // (heads // kv_heads)
    flat_head = torch.arange(batch, device=q.device).view(batch, 1) * kv_heads + kv_head.view(1, heads)
    return (flat_head * rows_per_head).view(batch, heads, 1, 1)


def _unique_sorted(ids: Tensor, limit: int) -> tuple[Tensor, Tensor]:
    """Sort ids along the last dim and flag the valid first occurrences (0 <= id < limit)."""
    ids = torch.where((ids >= 0) & (ids < limit), ids, limit)
    ids, _ = ids.sort(dim=-1)
    repeat = F.pad(ids[..., 1:] == ids[..., :-1], (1, 0), value=False)
    valid = (ids < limit) & ~repeat
    return torch.where(valid, ids, 0), valid


def _run_groups(q, v_dim, groups, query_block_size, gather_slice, attend_kwargs, per_group_elems):
    """Apply ``gather_slice(g0, g1) -> (keys, values, key_pos, valid)`` and attention over group slices."""
    batch, heads, lq, dim = q.shape
    padded = groups * query_block_size
    queries = F.pad(q, (0, 0, 0, padded - lq)) if padded != lq else q
    queries = queries.reshape(batch, heads, groups, query_block_size, dim)
    step = max(1, GATHER_BUDGET // max(1, per_group_elems))
    outs = []
    for g0 in range(0, groups, step):
        g1 = min(groups, g0 + step)
        keys, values, key_pos, valid = gather_slice(g0, g1)
        outs.append(
            _attend(queries[:, :, g0:g1], keys, values, key_pos, valid, group_start=g0, **attend_kwargs)
        )
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    return out.reshape(batch, heads, padded, v_dim)[:, :, :lq]


def span_attention_gather(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    span_starts: Tensor,
    span_lengths: Tensor,
    *,
    max_span: int,
    query_block_size: int = 1,
    causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """Same contract as :func:`span_attention_reference`."""
    check_selection(q, k, span_starts, span_lengths, query_block_size, "span_attention")
    if max_span < 1:
        raise ValueError(f"span_attention: max_span must be >= 1; got {max_span}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    batch, heads, lq, dim = q.shape
    kv_heads, lk, dv = k.shape[1], k.shape[2], v.shape[-1]
    span_lengths = span_lengths.clamp(max=max_span)
    selected = span_starts.shape[-1] * max_span
    if selected >= DENSE_FRACTION * lk:
        return _dense(
            q, k, v, span_starts, span_lengths, query_block_size=query_block_size, causal=causal, scale=scale
        )

    offsets = torch.arange(max_span, device=q.device)
    base = _row_offsets(q, kv_heads, lk)
    k_rows, v_rows = k.reshape(-1, dim), v.reshape(-1, dv)

    def gather_slice(g0: int, g1: int):
        starts, lengths = span_starts[:, :, g0:g1], span_lengths[:, :, g0:g1]
        positions = starts.unsqueeze(-1) + offsets
        inside = (starts.unsqueeze(-1) >= 0) & (offsets < lengths.unsqueeze(-1))
        positions = torch.where(inside, positions, -1).flatten(-2)
        positions, valid = _unique_sorted(positions, lk)
        rows = (positions + base).reshape(-1)
        shape = (batch, heads, g1 - g0, positions.shape[-1])
        return (
            k_rows.index_select(0, rows).view(*shape, dim),
            v_rows.index_select(0, rows).view(*shape, dv),
            positions,
            valid,
        )

    attend_kwargs = {
        "query_block_size": query_block_size,
        "lq": lq,
        "lk": lk,
        "causal": causal,
        "scale": scale,
    }
    per_group = batch * heads * selected * max(dim, dv)
    return _run_groups(q, dv, span_starts.shape[2], query_block_size, gather_slice, attend_kwargs, per_group)


def sparse_attention_gather(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    block_indices: Tensor,
    *,
    block_size: int,
    query_block_size: int = 1,
    causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """Same contract as :func:`sparse_attention_reference`; gathers whole key blocks."""
    starts, lengths = blocks_to_spans(block_indices, block_size)
    check_selection(q, k, starts, lengths, query_block_size, "sparse_attention")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    batch, heads, lq, dim = q.shape
    kv_heads, lk, dv = k.shape[1], k.shape[2], v.shape[-1]
    selected = block_indices.shape[-1] * block_size
    if selected >= DENSE_FRACTION * lk:
        return _dense(q, k, v, starts, lengths, query_block_size=query_block_size, causal=causal, scale=scale)

    blocks = math.ceil(lk / block_size)
    pad = blocks * block_size - lk
    k_blocks = (F.pad(k, (0, 0, 0, pad)) if pad else k).reshape(-1, block_size * dim)
    v_blocks = (F.pad(v, (0, 0, 0, pad)) if pad else v).reshape(-1, block_size * dv)
    base = _row_offsets(q, kv_heads, blocks)
    offsets = torch.arange(block_size, device=q.device)

    def gather_slice(g0: int, g1: int):
        ids, block_valid = _unique_sorted(block_indices[:, :, g0:g1], blocks)
        rows = (ids + base).reshape(-1)
        shape = (batch, heads, g1 - g0, ids.shape[-1] * block_size)
        keys = k_blocks.index_select(0, rows).view(*shape, dim)
        values = v_blocks.index_select(0, rows).view(*shape, dv)
        key_pos = (ids.unsqueeze(-1) * block_size + offsets).flatten(-2)
        valid = (block_valid.unsqueeze(-1) & (key_pos.view(*ids.shape, block_size) < lk)).flatten(-2)
        return keys, values, key_pos, valid

    attend_kwargs = {
        "query_block_size": query_block_size,
        "lq": lq,
        "lk": lk,
        "causal": causal,
        "scale": scale,
    }
    per_group = batch * heads * selected * max(dim, dv)
    return _run_groups(
        q, dv, block_indices.shape[2], query_block_size, gather_slice, attend_kwargs, per_group
    )
