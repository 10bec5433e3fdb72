"""Reference of gather-sparse attention: dense softmax attention under a mask built from the selection.

A query (or a query block of ``query_block_size`` consecutive queries) attends only to the keys in
its selected spans. Two ways to select, one primitive:

* blocks — ``block_indices[b, h, g, s]`` is the index of a key block of ``block_size`` keys
  (keys ``idx·block_size .. idx·block_size + block_size - 1``), -1 = padding;
* spans — ``span_starts[b, h, g, s]`` and ``span_lengths[b, h, g, s]`` give arbitrary key ranges
  ``start .. start + length - 1`` with ``length <= max_span``; start -1 or length 0 = padding.

``g`` runs over query groups: ``ceil(Lq / query_block_size)`` of them (``query_block_size=1``: one
per query). The selection is a set: a key named twice counts once (the reference's boolean mask).
Keys past Lk are ignored; ``causal`` further hides key j from query i when j > i + (Lk - Lq).
A query that sees no key returns zeros.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..softmax.naive import causal_visibility, check_attention_inputs, repeat_kv_heads


def check_selection(
    q: Tensor, k: Tensor, starts: Tensor, lengths: Tensor, query_block_size: int, op: str
) -> None:
    """Raise ``ValueError`` naming the constraint when the selection tensors do not fit q and k."""
    check_attention_inputs(q, k, k, op=op)
    if query_block_size < 1:
        raise ValueError(f"{op}: query_block_size must be >= 1; got {query_block_size}")
    groups = math.ceil(q.shape[2] / query_block_size)
    if starts.dim() != 4 or starts.shape[:3] != (q.shape[0], q.shape[1], groups):
        raise ValueError(
            f"{op}: the selection must be (B, Hq, ceil(Lq / query_block_size), S) = "
            f"({q.shape[0]}, {q.shape[1]}, {groups}, S); got {tuple(starts.shape)}"
        )
    if lengths.shape != starts.shape:
        raise ValueError(
            f"{op}: span_lengths {tuple(lengths.shape)} must match span_starts {tuple(starts.shape)}"
        )
    if starts.dtype.is_floating_point or lengths.dtype.is_floating_point:
        raise ValueError(f"{op}: indices, starts and lengths must be integer tensors")


def blocks_to_spans(block_indices: Tensor, block_size: int) -> tuple[Tensor, Tensor]:
    """Block indices (-1 = padding) as span starts and lengths."""
    if block_size < 1:
        raise ValueError(f"sparse_attention: block_size must be >= 1; got {block_size}")
    valid = block_indices >= 0
    starts = torch.where(valid, block_indices * block_size, -1)
    lengths = torch.where(valid, block_size, 0)
    return starts, lengths


def selection_mask(starts: Tensor, lengths: Tensor, lq: int, lk: int, query_block_size: int) -> Tensor:
    """Boolean (B, H, Lq, Lk): key j is in one of query i's spans."""
    keys = torch.arange(lk, device=starts.device)
    inside = (keys >= starts[..., None]) & (keys < (starts + lengths)[..., None]) & (starts[..., None] >= 0)
    per_group = inside.any(dim=-2)  # (B, H, G, Lk)
    return per_group.repeat_interleave(query_block_size, dim=2)[:, :, :lq]


def span_attention_reference(
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
    """Span-sparse attention as dense attention under the span mask, the ground truth.

    Args:
        q: (B, Hq, Lq, D); k: (B, Hkv, Lk, D); v: (B, Hkv, Lk, Dv) (GQA when Hq is a multiple of Hkv).
        span_starts, span_lengths: integer (B, Hq, ceil(Lq / query_block_size), S).
        max_span: upper bound of ``span_lengths`` (the gather path's static span width).
        query_block_size: consecutive queries sharing one selection.
        causal, scale: as for softmax attention.
    """
    check_selection(q, k, span_starts, span_lengths, query_block_size, "span_attention")
    if max_span < 1:
        raise ValueError(f"span_attention: max_span must be >= 1; got {max_span}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    lq, lk = q.shape[2], k.shape[2]
    visible = selection_mask(span_starts, span_lengths.clamp(max=max_span), lq, lk, query_block_size)
    if causal:
        visible = visible & causal_visibility(lq, lk, q.device)
    k, v = repeat_kv_heads(k, q.shape[1]), repeat_kv_heads(v, q.shape[1])
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    empty_row = ~visible.any(dim=-1, keepdim=True)
    scores = scores.masked_fill(~visible & ~empty_row, float("-inf"))
    weights = torch.softmax(scores, dim=-1).masked_fill(empty_row, 0.0)
    return torch.matmul(weights, v)


def sparse_attention_reference(
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
    """Block-sparse attention as dense attention under the block mask, the ground truth.

    ``block_indices``: integer (B, Hq, ceil(Lq / query_block_size), S), -1 = padding.
    """
    starts, lengths = blocks_to_spans(block_indices, block_size)
    return span_attention_reference(
        q,
        k,
        v,
        starts,
        lengths,
        max_span=block_size,
        query_block_size=query_block_size,
        causal=causal,
        scale=scale,
    )
