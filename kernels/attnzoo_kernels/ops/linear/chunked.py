"""Fast PyTorch linear attention: associative form (non-causal), chunked form (causal), recurrent step.

Causal, with chunks of C tokens: inside a chunk the masked C x C similarities are used directly;
earlier chunks enter through the running sums S = Σ φ(k_j) v_jᵀ and z = Σ φ(k_j), taken as an
exclusive cumulative sum over chunk summaries. Everything is batched over chunks (no Python loop):
time O(L·C·(F + Dv) + L·F·Dv), memory O(L·C + (L/C)·F·Dv), i.e. linear in L.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .feature_maps import FeatureMap, resolve_feature_map
from .naive import check_linear_inputs


def causal_linear_from_features(fq: Tensor, fk: Tensor, v: Tensor, *, chunk_size: int, eps: float) -> Tensor:
    """Causal linear attention on feature-mapped queries/keys (B, H, L, F) and values (B, H, L, Dv)."""
    b, h, length, features = fq.shape
    dv = v.shape[-1]
    c = max(1, min(chunk_size, length))
    pad = (-length) % c
    if pad:
        # Zero features add nothing to any sum, so padded keys are inert and padded queries are cut off.
        fq, fk, v = (F.pad(t, (0, 0, 0, pad)) for t in (fq, fk, v))
    n = (length + pad) // c
    fq = fq.reshape(b, h, n, c, features)
    fk = fk.reshape(b, h, n, c, features)
    v = v.reshape(b, h, n, c, dv)
    chunk_kv = torch.matmul(fk.transpose(-1, -2), v)
    chunk_z = fk.sum(-2)
    prefix_kv = torch.cat([torch.zeros_like(chunk_kv[:, :, :1]), chunk_kv[:, :, :-1].cumsum(2)], dim=2)
    prefix_z = torch.cat([torch.zeros_like(chunk_z[:, :, :1]), chunk_z[:, :, :-1].cumsum(2)], dim=2)
    intra = torch.tril(torch.matmul(fq, fk.transpose(-1, -2)))
    numerator = torch.matmul(intra, v) + torch.matmul(fq, prefix_kv)
    denominator = intra.sum(-1) + torch.matmul(fq, prefix_z.unsqueeze(-1)).squeeze(-1)
    out = numerator / (denominator.unsqueeze(-1) + eps)
    return out.reshape(b, h, n * c, dv)[:, :, :length]


def linear_attention_chunked(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    feature_map: str | FeatureMap = "elu",
    causal: bool = False,
    eps: float = 1e-6,
    chunk_size: int = 64,
) -> Tensor:
    """Same contract as :func:`linear_attention_reference`, in O(L) time and memory."""
    check_linear_inputs(q, k, v, causal)
    if chunk_size < 1:
        raise ValueError(f"linear_attention: chunk_size must be >= 1; got {chunk_size}")
    fm = resolve_feature_map(feature_map)
    fq, fk = fm(q, is_query=True), fm(k, is_query=False)
    if causal:
        return causal_linear_from_features(fq, fk, v, chunk_size=chunk_size, eps=eps)
    kv = torch.matmul(fk.transpose(-1, -2), v)
    z = fk.sum(-2, keepdim=True)
    return torch.matmul(fq, kv) / (torch.matmul(fq, z.transpose(-1, -2)) + eps)


class LinearAttentionState(NamedTuple):
    """Recurrent state of causal linear attention: S = Σ φ(k_j) v_jᵀ (B,H,F,Dv) and z = Σ φ(k_j) (B,H,F)."""

    kv: Tensor
    key_sum: Tensor


def linear_attention_step(
    q_t: Tensor,
    k_t: Tensor,
    v_t: Tensor,
    state: LinearAttentionState | None = None,
    *,
    feature_map: str | FeatureMap = "elu",
    eps: float = 1e-6,
) -> tuple[Tensor, LinearAttentionState]:
    """One decoding step of causal linear attention.

    Args:
        q_t, k_t: (B, H, D) the new token's query and key; v_t: (B, H, Dv).
        state: the state after the previous tokens, or None at the start.

    Returns:
        (out (B, H, Dv), new state); feeding tokens 0..L-1 reproduces causal linear attention.
    """
    if q_t.dim() != 3 or k_t.shape != q_t.shape or v_t.dim() != 3 or v_t.shape[:2] != q_t.shape[:2]:
        raise ValueError(
            "linear_attention_step: q_t, k_t must be (B, H, D) and v_t (B, H, Dv); "
            f"got {tuple(q_t.shape)}, {tuple(k_t.shape)}, {tuple(v_t.shape)}"
        )
    fm = resolve_feature_map(feature_map)
    if not fm.token_local:
        raise ValueError(
            f"linear_attention_step: feature map {fm!r} is not token-local (e.g. EcoFormerHash without a "
            "fixed sigma), so a single token's features are undefined"
        )
    fq = fm(q_t.unsqueeze(2), is_query=True).squeeze(2)
    fk = fm(k_t.unsqueeze(2), is_query=False).squeeze(2)
    if state is None:
        state = LinearAttentionState(
            fk.new_zeros(*fk.shape, v_t.shape[-1]), fk.new_zeros(fk.shape)
        )
    kv = state.kv + fk.unsqueeze(-1) * v_t.unsqueeze(-2)
    key_sum = state.key_sum + fk
    numerator = torch.matmul(fq.unsqueeze(-2), kv).squeeze(-2)
    denominator = (fq * key_sum).sum(-1, keepdim=True)
    return numerator / (denominator + eps), LinearAttentionState(kv, key_sum)
