"""Fast PyTorch linear attention: associative form (non-causal), chunked form (causal), recurrent step.

Causal, with chunks of C tokens: inside a chunk the masked C x C similarities are used directly;
earlier chunks enter through the running sums S = Σ φ(k_j) v_jᵀ and z = Σ φ(k_j), taken as an
exclusive cumulative sum over chunk summaries. The chunks of a slice of ``SLICE_TOKENS`` tokens are
batched; slices run in a loop that carries S and z. Time O(L·C·(F + Dv) + L·F·Dv), memory
O(L·Dv) for the output plus O(SLICE_TOKENS·(C + F·Dv/C)) per slice, i.e. linear in L.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .feature_maps import FeatureMap, resolve_feature_map
from .naive import check_linear_inputs

SLICE_TOKENS = 512  # tokens per pass of the outer loop, so that a pass's tensors stay in CPU cache


def _causal_slice(
    fq: Tensor, fk: Tensor, v: Tensor, kv0: Tensor | None, z0: Tensor | None, *, c: int, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Causal linear attention over one slice, given the sums (kv0, z0) of everything before it.

    Returns the slice's output and the sums including the slice."""
    b, h, length, features = fq.shape
    dv = v.shape[-1]
    pad = (-length) % c
    if pad:
        # Zero features add nothing to any sum, so padded keys are inert and padded queries are cut off.
        fq, fk, v = (F.pad(t, (0, 0, 0, pad)) for t in (fq, fk, v))
    n = (length + pad) // c
    fq = fq.reshape(b, h, n, c, features)
    fk = fk.reshape(b, h, n, c, features)
    v = v.reshape(b, h, n, c, dv)
    chunk_kv = torch.matmul(fk.transpose(-1, -2), v)  # (B, H, n, F, Dv)
    chunk_z = fk.sum(-2)  # (B, H, n, F)
    running_kv = chunk_kv.cumsum(2)
    running_z = chunk_z.cumsum(2)
    prefix_kv = torch.cat([torch.zeros_like(chunk_kv[:, :, :1]), running_kv[:, :, :-1]], dim=2)
    prefix_z = torch.cat([torch.zeros_like(chunk_z[:, :, :1]), running_z[:, :, :-1]], dim=2)
    total_kv, total_z = running_kv[:, :, -1], running_z[:, :, -1]
    if kv0 is not None:
        prefix_kv = prefix_kv + kv0.unsqueeze(2)
        prefix_z = prefix_z + z0.unsqueeze(2)
        total_kv, total_z = total_kv + kv0, total_z + z0
    intra = torch.tril(torch.matmul(fq, fk.transpose(-1, -2)))
    numerator = torch.matmul(intra, v) + torch.matmul(fq, prefix_kv)
    denominator = intra.sum(-1) + torch.matmul(fq, prefix_z.unsqueeze(-1)).squeeze(-1)
    out = numerator / (denominator.unsqueeze(-1) + eps)
    return out.reshape(b, h, n * c, dv)[:, :, :length], total_kv, total_z


def causal_linear_from_features(
    fq: Tensor, fk: Tensor, v: Tensor, *, chunk_size: int, eps: float, feature_map: FeatureMap | None = None
) -> Tensor:
    """Causal linear attention on feature-mapped queries/keys (B, H, L, F) and values (B, H, L, Dv).

    With a token-local ``feature_map``, ``fq``/``fk`` are the raw queries/keys and the map runs per
    slice. Within a slice of ``SLICE_TOKENS`` tokens the chunks are batched; slices run in order and
    hand on the running sums, so that a slice's intermediates stay in cache (one batched pass over
    all of L measured 2-4x slower per token at L >= 4096 on CPU)."""
    length = fq.shape[2]
    c = max(1, min(chunk_size, length))
    slice_len = c * max(1, SLICE_TOKENS // c)
    kv, z = None, None
    outs = []
    for start in range(0, length, slice_len):
        stop = min(length, start + slice_len)
        q_part, k_part = fq[:, :, start:stop], fk[:, :, start:stop]
        if feature_map is not None:
            q_part, k_part = feature_map(q_part, is_query=True), feature_map(k_part, is_query=False)
        out, kv, z = _causal_slice(q_part, k_part, v[:, :, start:stop], kv, z, c=c, eps=eps)
        outs.append(out)
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)


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
    if q.dtype in (torch.float16, torch.bfloat16):
        # Sums over thousands of tokens lose too much in half precision: compute in float32.
        out = linear_attention_chunked(
            q.float(), k.float(), v.float(), feature_map=fm, causal=causal, eps=eps, chunk_size=chunk_size
        )
        return out.to(q.dtype)
    if causal and fm.token_local:
        return causal_linear_from_features(q, k, v, chunk_size=chunk_size, eps=eps, feature_map=fm)
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
        state = LinearAttentionState(fk.new_zeros(*fk.shape, v_t.shape[-1]), fk.new_zeros(fk.shape))
    kv = state.kv + fk.unsqueeze(-1) * v_t.unsqueeze(-2)
    key_sum = state.key_sum + fk
    numerator = torch.matmul(fq.unsqueeze(-2), kv).squeeze(-2)
    denominator = (fq * key_sum).sum(-1, keepdim=True)
    return numerator / (denominator + eps), LinearAttentionState(kv, key_sum)
