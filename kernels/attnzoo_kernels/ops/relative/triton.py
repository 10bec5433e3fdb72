"""Fused relative attention forward in Triton: skewed relative logits inside a flash-attention loop.

For a tile of queries ``i`` and keys ``j`` the relative logit ``q_i . E[j - i]`` is read straight
from the ``(2L - 1, D)`` offset table at row ``j - i + L - 1`` (the skew is the addressing), so
neither the ``(L, L, D)`` relative tensor nor the ``(L, L)`` logits exist in memory. Softmax is
online (running max and sum). Forward only: training goes through the PyTorch backends.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from .chunked import offset_table
from .naive import check_relative_inputs

__all__ = ["relative_attention_triton"]

# The output buffer's allocator; tests swap in a NaN-filled one to catch rows the kernel skips.
_new_buffer = torch.empty


@triton.jit
def _relative_attention_fwd(
    Q, K, V, T, Out,
    length, heads, depth, value_depth, scale,
    stride_qb, stride_qh, stride_ql,
    stride_kb, stride_kh, stride_kl,
    stride_vb, stride_vh, stride_vl,
    stride_ob, stride_oh, stride_ol,
    stride_th, stride_tl,
    CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // heads
    h = pid_bh % heads
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    row_ok = offs_m < length
    q = tl.load(
        Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_ql + offs_d[None, :],
        mask=row_ok[:, None] & (offs_d[None, :] < depth),
        other=0.0,
    )
    q32 = q.to(tl.float32)
    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_DV), tl.float32)
    if CAUSAL:
        end = tl.minimum((pid_m + 1) * BLOCK_M, length)
    else:
        end = length
    for start_n in range(0, end, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        col_ok = offs_n < length
        k = tl.load(
            K + b * stride_kb + h * stride_kh + offs_n[:, None] * stride_kl + offs_d[None, :],
            mask=col_ok[:, None] & (offs_d[None, :] < depth),
            other=0.0,
        )
        logits = tl.dot(q, tl.trans(k)).to(tl.float32)
        # The skew: key j of query i reads the table row of offset j - i.
        table_row = offs_n[None, :] - offs_m[:, None] + length - 1
        pair_ok = row_ok[:, None] & col_ok[None, :]
        table = tl.load(
            T + h * stride_th + table_row[:, :, None] * stride_tl + offs_d[None, None, :],
            mask=pair_ok[:, :, None] & (offs_d[None, None, :] < depth),
            other=0.0,
        )
        logits += tl.sum(q32[:, None, :] * table.to(tl.float32), axis=2)
        logits *= scale
        valid = pair_ok
        if CAUSAL:
            valid = valid & (offs_n[None, :] <= offs_m[:, None])
        logits = tl.where(valid, logits, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(logits, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp(logits - m_safe[:, None])
        alpha = tl.exp(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(
            V + b * stride_vb + h * stride_vh + offs_n[:, None] * stride_vl + offs_dv[None, :],
            mask=col_ok[:, None] & (offs_dv[None, :] < value_depth),
            other=0.0,
        )
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v).to(tl.float32)
        m_i = m_new
    out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]  # l_i is 0 only on padding rows
    tl.store(
        Out + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_ol + offs_dv[None, :],
        out.to(Out.dtype.element_ty),
        mask=row_ok[:, None] & (offs_dv[None, :] < value_depth),
    )


def relative_attention_triton(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    rel_emb: Tensor,
    *,
    causal: bool = True,
    scale: float | None = None,
    block_m: int = 16,
    block_n: int = 16,
) -> Tensor:
    """Forward-only fused relative attention; same contract as the reference."""
    check_relative_inputs(q, k, v, rel_emb, causal)
    B, H, L, D = q.shape
    Dv = v.shape[-1]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    table = offset_table(rel_emb, L, causal).to(q.dtype).contiguous()
    out = _new_buffer(B, H, L, Dv, dtype=q.dtype, device=q.device)
    per_head = table.dim() == 3
    stride_th = table.stride(0) if per_head else 0
    stride_tl = table.stride(-2)
    grid = (triton.cdiv(L, block_m), B * H)
    _relative_attention_fwd[grid](
        q, k, v, table, out,
        L, H, D, Dv, scale,
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        stride_th, stride_tl,
        CAUSAL=causal, BLOCK_M=block_m, BLOCK_N=block_n,
        BLOCK_D=max(16, triton.next_power_of_2(D)), BLOCK_DV=max(16, triton.next_power_of_2(Dv)),
    )  # fmt: skip
    return out
