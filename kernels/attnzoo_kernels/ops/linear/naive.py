"""Reference of kernelized linear attention, written from the equations as an explicit L x L matrix.

With a feature map φ (see :mod:`.feature_maps`)::

    O_i = Σ_j sim_ij v_j / (Σ_j sim_ij + eps),   sim_ij = φ(q_i)·φ(k_j)

over all keys j (non-causal) or j <= i (causal). The reference builds sim in full: O(L²) memory.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .feature_maps import FeatureMap, resolve_feature_map


def check_linear_inputs(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> None:
    """Raise ``ValueError`` naming the constraint when q, k (B,H,L,D) and v (B,H,L,Dv) disagree."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            "linear_attention: q, k, v must be 4-D (batch, heads, length, head_dim); "
            f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if k.shape[:3] != v.shape[:3] or q.shape[:2] != k.shape[:2]:
        raise ValueError(
            "linear_attention: q, k, v must share (batch, heads) and k, v the length; "
            f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"linear_attention: q and k must share head_dim; got {q.shape[-1]} and {k.shape[-1]}"
        )
    if causal and q.shape[2] != k.shape[2]:
        raise ValueError(
            f"linear_attention: causal needs as many queries as keys; got {q.shape[2]} and {k.shape[2]} "
            "(use linear_attention_step for decoding)"
        )
    if len({q.dtype, k.dtype, v.dtype}) != 1 or not q.is_floating_point():
        raise ValueError("linear_attention: q, k, v must share one floating-point dtype")


def linear_attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    feature_map: str | FeatureMap = "elu",
    causal: bool = False,
    eps: float = 1e-6,
    chunk_size: int = 64,
) -> Tensor:
    """Linear attention through the full similarity matrix, the ground truth.

    Args:
        q, k: (B, H, L, D); v: (B, H, L, Dv).
        feature_map: ``"elu"`` or a :class:`FeatureMap` instance (FavorPlus, EcoFormerHash).
        causal: key j contributes to query i only when j <= i (needs Lq == Lk).
        eps: added to the normaliser Σ_j sim_ij.
        chunk_size: ignored here (the chunked and Triton backends' block length).

    Returns:
        (B, H, Lq, Dv).
    """
    check_linear_inputs(q, k, v, causal)
    fm = resolve_feature_map(feature_map)
    sim = torch.matmul(fm(q, is_query=True), fm(k, is_query=False).transpose(-1, -2))
    if causal:
        sim = torch.tril(sim)
    return torch.matmul(sim, v) / (sim.sum(-1, keepdim=True) + eps)
