"""Reference relative-position self-attention, written from the equations (Shaw et al. 2018; Huang et al. 2019).

Notation (Music Transformer, section 3.4): for a query at position ``i`` and a key at position ``j``
the logit is

    logit[i, j] = scale * (q_i . k_j + q_i . E[j - i])

where ``E[o]`` is the learned embedding of the relative offset ``o = j - i``, and zero when ``|o|``
reaches ``max_relative_position`` (offsets beyond the table have no embedding, as in tensor2tensor's
``get_relative_embeddings_left``, which pads the table with zeros). ``S_rel[i, j] = q_i . E[j - i]``
is the paper's relative term. The attention output is ``softmax(logits) @ v``, with keys ``j > i``
masked out when causal.

Layout of ``rel_emb`` (tensor2tensor's ``key_relative_embeddings``): its last two dims are
``(P, D)``, optionally with a leading head dim ``(H, P, D)``. Entry ``r`` is the embedding of offset
``o = r - (R - 1)``, where ``R = max_relative_position``:

* causal: ``P = R``; entries cover offsets ``-(R-1) .. 0`` (the last entry is "same position");
* non-causal: ``P = 2R - 1``; entries cover offsets ``-(R-1) .. R-1`` (the middle entry is offset 0).

The reference materialises the full ``(L, L, D)`` relative tensor ``E[j - i]`` (per head when the
table has one), the ``O(L^2 D)`` memory the skewing trick avoids. It is the float64 ground truth.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "relative_attention_reference",
    "relative_logits_reference",
    "relative_embeddings_for_offsets",
    "check_relative_inputs",
    "max_relative_position",
]


def max_relative_position(rel_emb: Tensor, causal: bool) -> int:
    """``R`` for a table of ``P`` entries: ``P`` when causal, ``(P + 1) / 2`` otherwise."""
    entries = rel_emb.shape[-2]
    return entries if causal else (entries + 1) // 2


def check_relative_inputs(q: Tensor, k: Tensor, v: Tensor, rel_emb: Tensor, causal: bool) -> None:
    """Raise ValueError naming the violated constraint."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"relative_attention: q, k, v must be (batch, heads, length, depth); got dims "
            f"{q.dim()}, {k.dim()}, {v.dim()}"
        )
    if q.shape != k.shape:
        raise ValueError(
            f"relative_attention: q and k must have the same shape; got {tuple(q.shape)} and {tuple(k.shape)}"
        )
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"relative_attention: v must match q in (batch, heads, length); got {tuple(v.shape)} vs {tuple(q.shape)}"
        )
    if len({q.dtype, k.dtype, v.dtype, rel_emb.dtype}) != 1 or not q.is_floating_point():
        raise ValueError(
            "relative_attention: q, k, v and rel_emb must share one floating dtype; got "
            f"{q.dtype}, {k.dtype}, {v.dtype}, {rel_emb.dtype}"
        )
    if rel_emb.dim() not in (2, 3):
        raise ValueError(
            f"relative_attention: rel_emb must be (P, D) or (H, P, D); got shape {tuple(rel_emb.shape)}"
        )
    if rel_emb.shape[-1] != q.shape[-1]:
        raise ValueError(
            f"relative_attention: rel_emb depth {rel_emb.shape[-1]} must equal the query depth {q.shape[-1]}"
        )
    if rel_emb.dim() == 3 and rel_emb.shape[0] != q.shape[1]:
        raise ValueError(
            f"relative_attention: a per-head rel_emb needs {q.shape[1]} heads; got {rel_emb.shape[0]}"
        )
    if rel_emb.shape[-2] < 1:
        raise ValueError("relative_attention: rel_emb needs at least one entry (max_relative_position >= 1)")
    if not causal and rel_emb.shape[-2] % 2 != 1:
        raise ValueError(
            f"relative_attention: a non-causal rel_emb has 2*max_relative_position - 1 entries (odd); "
            f"got {rel_emb.shape[-2]}"
        )
    if q.shape[2] < 1:
        raise ValueError("relative_attention: the sequence length must be at least 1")


def relative_embeddings_for_offsets(rel_emb: Tensor, offsets: Tensor, causal: bool) -> Tensor:
    """``E[o]`` for every offset in ``offsets`` (any shape), zero outside the table.

    Returns ``(*offsets.shape, D)`` or ``(H, *offsets.shape, D)`` for a per-head table.
    """
    R = max_relative_position(rel_emb, causal)
    index = offsets + (R - 1)
    inside = (index >= 0) & (index < rel_emb.shape[-2])
    gathered = rel_emb[..., index.clamp(0, rel_emb.shape[-2] - 1), :]
    return gathered * inside.unsqueeze(-1).to(rel_emb.dtype)


def relative_logits_reference(q: Tensor, rel_emb: Tensor, *, causal: bool = True) -> Tensor:
    """``S_rel[i, j] = q_i . E[j - i]`` (unscaled, unmasked) from the gathered ``(L, L, D)`` tensor."""
    positions = torch.arange(q.shape[2], device=q.device)
    relative = relative_embeddings_for_offsets(rel_emb, positions[None, :] - positions[:, None], causal)
    if relative.dim() == 3:
        return torch.einsum("bhid,ijd->bhij", q, relative)
    return torch.einsum("bhid,hijd->bhij", q, relative)


def relative_attention_reference(
    q: Tensor, k: Tensor, v: Tensor, rel_emb: Tensor, *, causal: bool = True, scale: float | None = None
) -> Tensor:
    """Relative self-attention by the definition, building the full relative tensor.

    q, k: (B, H, L, D); v: (B, H, L, Dv); rel_emb: (P, D) or (H, P, D) (see the module docstring).
    ``scale`` multiplies both terms of the logit; default ``1/sqrt(D)``. Returns (B, H, L, Dv).
    """
    check_relative_inputs(q, k, v, rel_emb, causal)
    length, depth = q.shape[2], q.shape[3]
    scale = 1.0 / math.sqrt(depth) if scale is None else scale
    positions = torch.arange(length, device=q.device)
    offsets = positions[None, :] - positions[:, None]  # [i, j] = j - i
    content = torch.einsum("bhid,bhjd->bhij", q, k)
    logits = scale * (content + relative_logits_reference(q, rel_emb, causal=causal))
    if causal:
        future = offsets > 0
        logits = logits.masked_fill(future, float("-inf"))
    weights = torch.softmax(logits, dim=-1)
    return weights @ v
