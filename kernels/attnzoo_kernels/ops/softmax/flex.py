"""Softmax attention through ``torch.nn.attention.flex_attention``.

The mask and bias become a ``score_mod`` (scores + bias, -inf where hidden). Eager flex attention is
a slow reference loop; on CUDA the call goes through ``torch.compile`` (compiled once per shape
signature) to get the fused Triton kernel. On CPU it runs eagerly, forward only (torch has no CPU
backward for flex attention) and slower than the reference, so the dispatcher registers it for CUDA
only; tests call this function directly on CPU.
"""

from __future__ import annotations

import math
import warnings
from functools import cache

import torch
from torch import Tensor

from .naive import causal_visibility, check_attention_inputs


def flex_unavailable() -> str | None:
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return "torch.nn.attention.flex_attention needs torch >= 2.5"
    if not torch.cuda.is_available():
        return "the flex backend serves CUDA only, and no CUDA device is present"
    return None


@cache
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def softmax_attention_flex(
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
    """Same contract as :func:`softmax_attention_reference`, computed by flex attention (no dropout)."""
    from torch.nn.attention.flex_attention import flex_attention

    if dropout_p > 0:
        raise ValueError(
            "softmax_attention: the flex backend has no attention dropout; use sdpa or reference"
        )

    check_attention_inputs(q, k, v, op="softmax_attention", attn_mask=attn_mask, bias=bias)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    b, hq, lq, _ = q.shape
    lk = k.shape[2]
    shape = (b, hq, lq, lk)
    visible = None
    additive = None if bias is None else bias.expand(shape)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            visible = attn_mask.expand(shape)
        else:
            additive = attn_mask.expand(shape) if additive is None else additive + attn_mask
    if causal:
        lower = causal_visibility(lq, lk, q.device).expand(shape)
        visible = lower if visible is None else visible & lower
    empty_row = None
    if visible is not None:
        empty_row = ~visible.any(dim=-1, keepdim=True)
        visible = visible | empty_row

    def score_mod(score, batch, head, q_idx, k_idx):
        if additive is not None:
            score = score + additive[batch, head, q_idx, k_idx].to(score.dtype)
        if visible is not None:
            score = torch.where(visible[batch, head, q_idx, k_idx], score, float("-inf"))
        return score

    run = _compiled_flex() if q.device.type == "cuda" else flex_attention
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
        out = run(q, k, v, score_mod=score_mod, scale=scale, enable_gqa=hq != k.shape[1])
    if empty_row is not None:
        out = out.masked_fill(empty_row, 0.0)
    return out


def flex_reasons(q: Tensor, k: Tensor, v: Tensor, **kwargs) -> list[str]:
    reasons = []
    if q.device.type == "cpu" and any(t.requires_grad for t in (q, k, v)):
        # torch refuses CPU inputs that require grad even under no_grad.
        reasons.append("flex attention has no backward on CPU (inputs require grad)")
    for name in ("bias", "attn_mask"):
        t = kwargs.get(name)
        if t is not None and t.requires_grad and torch.is_grad_enabled():
            reasons.append(f"flex attention backend does not differentiate through {name}")
    if v.shape[-1] != q.shape[-1]:
        reasons.append("flex attention here needs head_dim of v equal to that of q")
    if kwargs.get("dropout_p", 0.0) > 0:
        reasons.append("flex attention has no attention dropout")
    return reasons
