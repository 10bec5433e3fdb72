"""Softmax attention through ``torch.nn.functional.scaled_dot_product_attention``.

SDPA picks a fused kernel (flash / memory-efficient / cuDNN on CUDA, a flash kernel on CPU) when it
can; a mask or bias is handed to it as one additive float mask (or a boolean mask when there is no
bias), GQA goes through ``enable_gqa`` (torch >= 2.5) or a head repeat.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .naive import causal_visibility, check_attention_inputs, repeat_kv_heads

_HAS_ENABLE_GQA = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 5)


def softmax_attention_sdpa(
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
    """Same contract as :func:`softmax_attention_reference`, computed by torch SDPA."""
    check_attention_inputs(q, k, v, op="softmax_attention", attn_mask=attn_mask, bias=bias)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    lq, lk = q.shape[2], k.shape[2]
    gqa = q.shape[1] != k.shape[1]
    if gqa and not _HAS_ENABLE_GQA:
        k, v = repeat_kv_heads(k, q.shape[1]), repeat_kv_heads(v, q.shape[1])
        gqa = False
    extra = {"enable_gqa": True} if gqa else {}

    if attn_mask is None and bias is None:
        # SDPA's own is_causal is top-left aligned; it matches ours only for square attention.
        if not causal or lq == lk:
            return F.scaled_dot_product_attention(
                q, k, v, is_causal=causal, scale=scale, dropout_p=dropout_p, **extra
            )

    visible = None
    additive = bias
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            visible = attn_mask
        else:
            additive = attn_mask if additive is None else additive + attn_mask
    if causal:
        lower = causal_visibility(lq, lk, q.device)
        visible = lower if visible is None else visible & lower
    if visible is None:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=additive.to(q.dtype), scale=scale, dropout_p=dropout_p, **extra
        )

    empty_row = ~visible.any(dim=-1, keepdim=True)
    # Rows that see no key are opened (to stay finite in forward and backward) and zeroed afterwards.
    visible = visible | empty_row
    if additive is None:
        mask = visible
    else:
        mask = additive.to(q.dtype).masked_fill(~visible, float("-inf"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, dropout_p=dropout_p, **extra)
    # Unconditional (no data-dependent branch) so that torch.compile traces one graph.
    return out.masked_fill(empty_row, 0.0)
