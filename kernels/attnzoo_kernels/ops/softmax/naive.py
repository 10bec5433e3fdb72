"""Float64-friendly reference of scaled dot-product (softmax) attention, written from the equations.

``O = softmax(Q Kᵀ · scale + bias + mask) V`` with grouped-query attention (GQA): query head
``h`` reads key/value head ``h // (Hq / Hkv)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def check_attention_inputs(
    q: Tensor, k: Tensor, v: Tensor, *, op: str, attn_mask: Tensor | None = None, bias: Tensor | None = None
) -> None:
    """Raise ``ValueError`` naming the constraint when q (B,Hq,Lq,D), k (B,Hkv,Lk,D), v (B,Hkv,Lk,Dv),
    or a mask/bias that must broadcast to (B, Hq, Lq, Lk), disagree."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"{op}: q, k, v must be 4-D (batch, heads, length, head_dim); "
            f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if k.shape[:3] != v.shape[:3]:
        raise ValueError(
            f"{op}: k and v must share (batch, heads, length); got {tuple(k.shape)} and {tuple(v.shape)}"
        )
    if q.shape[0] != k.shape[0]:
        raise ValueError(f"{op}: q and k must share the batch size; got {q.shape[0]} and {k.shape[0]}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{op}: q and k must share head_dim; got {q.shape[-1]} and {k.shape[-1]}")
    if q.shape[1] % k.shape[1] != 0:
        raise ValueError(
            f"{op}: query heads ({q.shape[1]}) must be a multiple of key/value heads ({k.shape[1]}) for GQA"
        )
    if q.dtype != k.dtype or q.dtype != v.dtype:
        raise ValueError(f"{op}: q, k, v must share a dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if not q.is_floating_point():
        raise ValueError(f"{op}: q, k, v must be floating point; got {q.dtype}")
    scores = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    for name, extra in (("attn_mask", attn_mask), ("bias", bias)):
        if extra is None:
            continue
        try:
            torch.broadcast_shapes(tuple(extra.shape), scores)
        except RuntimeError:
            raise ValueError(
                f"{op}: {name} of shape {tuple(extra.shape)} must broadcast to (batch, heads, Lq, Lk) = {scores}"
            ) from None


def causal_visibility(lq: int, lk: int, device: torch.device) -> Tensor:
    """Boolean (Lq, Lk): query i sees key j when j <= i + (Lk - Lq) (bottom-right aligned, as for decoding)."""
    rows = torch.arange(lq, device=device)[:, None] + (lk - lq)
    return torch.arange(lk, device=device)[None, :] <= rows


def repeat_kv_heads(x: Tensor, query_heads: int) -> Tensor:
    """Repeat key/value heads so that query head h reads head h // group (GQA)."""
    group = query_heads // x.shape[1]
    return x if group == 1 else x.repeat_interleave(group, dim=1)


def softmax_attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    attn_mask: Tensor | None = None,
    bias: Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> Tensor:
    """Dense softmax attention, the ground truth.

    Args:
        q: (B, Hq, Lq, D) queries.
        k: (B, Hkv, Lk, D) keys; ``Hq`` must be a multiple of ``Hkv`` (GQA).
        v: (B, Hkv, Lk, Dv) values.
        attn_mask: boolean (True = may attend) or additive float, broadcastable to (B, Hq, Lq, Lk).
        bias: additive float scores (relative-position bias, ALiBi...), broadcastable to (B, Hq, Lq, Lk).
        causal: query i sees key j only when j <= i + (Lk - Lq) (bottom-right aligned).
        scale: multiplies Q Kᵀ; defaults to 1/sqrt(D).
        dropout_p: dropout on the attention weights (training only: pass 0 in eval, as for SDPA).

    Returns:
        (B, Hq, Lq, Dv). A query row with no visible key returns zeros (not NaN).
    """
    check_attention_inputs(q, k, v, op="softmax_attention", attn_mask=attn_mask, bias=bias)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    k = repeat_kv_heads(k, q.shape[1])
    v = repeat_kv_heads(v, q.shape[1])
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if bias is not None:
        scores = scores + bias
    visible = None
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            visible = attn_mask
        else:
            scores = scores + attn_mask
    if causal:
        lower = causal_visibility(q.shape[2], k.shape[2], q.device)
        visible = lower if visible is None else visible & lower
    if visible is None:
        weights = torch.softmax(scores, dim=-1)
    else:
        visible = visible.expand_as(scores)
        empty_row = ~visible.any(dim=-1, keepdim=True)
        # An empty row would be softmax over all -inf (NaN, also in backward): open it, then zero its weights.
        scores = scores.masked_fill(~visible & ~empty_row, float("-inf"))
        weights = torch.softmax(scores, dim=-1).masked_fill(empty_row, 0.0)
    if dropout_p > 0:
        weights = torch.nn.functional.dropout(weights, p=dropout_p)
    return torch.matmul(weights, v)
