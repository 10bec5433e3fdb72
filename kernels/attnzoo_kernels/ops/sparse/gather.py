"""Gather-sparse attention: gather each query group's selected keys, then dense attention on them.

Per query group the selected key positions (S spans of up to ``max_span`` keys) are listed, sorted
and de-duplicated (so overlapping spans or repeated blocks count once, as in the reference), and the
keys and values are gathered: memory O(B·H·G·S·max_span·D) with G query groups, i.e.
O(L·S·block) for per-query selection and O((L/query_block)·S·block) for block selection; the
L x L score matrix never exists.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .naive import blocks_to_spans, check_selection


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
    kv_heads, lk = k.shape[1], k.shape[2]
    groups = span_starts.shape[2]

    offsets = torch.arange(max_span, device=q.device)
    positions = span_starts.unsqueeze(-1) + offsets
    valid = (span_starts.unsqueeze(-1) >= 0) & (offsets < span_lengths.unsqueeze(-1)) & (positions < lk)
    # Invalid slots get the sentinel lk so that they sort last; sorting exposes repeats as neighbours.
    positions = torch.where(valid, positions, lk).flatten(-2)
    positions, _ = positions.sort(dim=-1)
    valid = positions < lk
    repeat = F.pad(positions[..., 1:] == positions[..., :-1], (1, 0), value=False)
    valid = valid & ~repeat
    positions = torch.where(valid, positions, 0)

    batch_index = torch.arange(batch, device=q.device).view(batch, 1, 1, 1)
    head_index = (torch.arange(heads, device=q.device) // (heads // kv_heads)).view(1, heads, 1, 1)
    keys = k[batch_index, head_index, positions]  # (B, H, G, N, D)
    values = v[batch_index, head_index, positions]

    padded = groups * query_block_size
    queries = F.pad(q, (0, 0, 0, padded - lq)) if padded != lq else q
    queries = queries.reshape(batch, heads, groups, query_block_size, dim)
    scores = torch.matmul(queries, keys.transpose(-1, -2)) * scale  # (B, H, G, Qb, N)

    visible = valid.unsqueeze(-2)
    if causal:
        query_pos = torch.arange(padded, device=q.device).view(groups, query_block_size, 1)
        visible = visible & (positions.unsqueeze(-2) <= query_pos + (lk - lq))
    visible = visible.expand_as(scores)
    empty_row = ~visible.any(dim=-1, keepdim=True)
    scores = scores.masked_fill(~visible & ~empty_row, float("-inf"))
    weights = torch.softmax(scores, dim=-1).masked_fill(empty_row, 0.0)
    out = torch.matmul(weights, values)
    return out.reshape(batch, heads, padded, v.shape[-1])[:, :, :lq]


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
    """Same contract as :func:`sparse_attention_reference`."""
    starts, lengths = blocks_to_spans(block_indices, block_size)
    return span_attention_gather(
        q, k, v, starts, lengths, max_span=block_size, query_block_size=query_block_size, causal=causal,
        scale=scale,
    )
