"""Bi-level routing attention as one fused Triton kernel (forward only).

One program per (query region, head): it loads the region's queries once, then walks the
``topk`` routed regions, reading each region's keys and values straight from the (possibly
strided) maps by pixel coordinates and folding them in with an online softmax. Nothing is
gathered into memory, unlike the PyTorch path's ``topk``-fold key/value copy. The routing
index itself comes from ``routing_index`` (region means, adjacency, ``topk``) in PyTorch.

Forward only (``supports_grad=False``); tested on CPU under ``TRITON_INTERPRET=1``. It is
registered below the PyTorch backend until it has been benchmarked on a GPU: request it with
``backend="triton"``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .naive import check_routing_inputs
from .vectorised import routing_index

__all__ = ["routing_attention_triton"]


@triton.jit
def _routing_attention_fwd(
    q_ptr, k_ptr, v_ptr, index_ptr, out_ptr,
    sqb, sqh, sqw, sqc,
    skb, skh, skw, skc,
    svb, svh, svw, svc,
    sob, soh, sow, soc,
    scale,
    N_WIN: tl.constexpr, REGION_H: tl.constexpr, REGION_W: tl.constexpr, TOPK: tl.constexpr,
    D_QK: tl.constexpr, D_V: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)  # batch * regions
    head = tl.program_id(1)
    regions: tl.constexpr = N_WIN * N_WIN
    tokens: tl.constexpr = REGION_H * REGION_W
    b = pid // regions
    r = pid % regions

    t = tl.arange(0, BLOCK_T)
    token_ok = t < tokens
    row = t // REGION_W
    col = t % REGION_W
    dqk = tl.arange(0, BLOCK_DQK)
    dv = tl.arange(0, BLOCK_DV)

    # queries of region r, head `head`: (BLOCK_T, BLOCK_DQK)
    qy = (r // N_WIN) * REGION_H + row
    qx = (r % N_WIN) * REGION_W + col
    q_offsets = b * sqb + qy[:, None] * sqh + qx[:, None] * sqw + (head * D_QK + dqk)[None, :] * sqc
    q = tl.load(q_ptr + q_offsets, mask=token_ok[:, None] & (dqk < D_QK)[None, :], other=0.0)

    m_i = tl.full((BLOCK_T,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_T,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_T, BLOCK_DV), dtype=tl.float32)
    for s in range(TOPK):
        routed = tl.load(index_ptr + pid * TOPK + s)
        ky = (routed // N_WIN) * REGION_H + row
        kx = (routed % N_WIN) * REGION_W + col
        k_offsets = b * skb + ky[:, None] * skh + kx[:, None] * skw + (head * D_QK + dqk)[None, :] * skc
        k = tl.load(k_ptr + k_offsets, mask=token_ok[:, None] & (dqk < D_QK)[None, :], other=0.0)
        v_offsets = b * svb + ky[:, None] * svh + kx[:, None] * svw + (head * D_V + dv)[None, :] * svc
        v = tl.load(v_ptr + v_offsets, mask=token_ok[:, None] & (dv < D_V)[None, :], other=0.0)

        if IEEE:
            scores = tl.dot(q, tl.trans(k), input_precision="ieee")
        else:
            scores = tl.dot(q, tl.trans(k))
        scores = scores * scale
        scores = tl.where(token_ok[None, :], scores, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(scores - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        if IEEE:
            acc = acc * alpha[:, None] + tl.dot(p, v.to(tl.float32), input_precision="ieee")
        else:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new

    out = acc / l_i[:, None]
    o_offsets = b * sob + qy[:, None] * soh + qx[:, None] * sow + (head * D_V + dv)[None, :] * soc
    tl.store(
        out_ptr + o_offsets, out.to(out_ptr.dtype.element_ty), mask=token_ok[:, None] & (dv < D_V)[None, :]
    )


def routing_attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    num_heads: int,
    n_win: int,
    topk: int,
    scale: float | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bi-level routing attention, fused in Triton; same contract as the reference. Forward only.

    ``out`` (optional, ``(batch, height, width, v_channels)``) receives the result in place.
    """
    check_routing_inputs(q, k, v, num_heads=num_heads, n_win=n_win, topk=topk)
    batch, height, width, c_qk = q.shape
    c_v = v.shape[-1]
    d_qk, d_v = c_qk // num_heads, c_v // num_heads
    scale = d_qk**-0.5 if scale is None else scale
    index = routing_index(q, k, n_win=n_win, topk=topk, scale=scale).to(torch.int32).contiguous()
    if out is None:
        out = torch.empty(batch, height, width, c_v, device=q.device, dtype=q.dtype)
    rh, rw = height // n_win, width // n_win
    grid = (batch * n_win * n_win, num_heads)
    _routing_attention_fwd[grid](
        q, k, v, index, out,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        float(scale),
        N_WIN=n_win, REGION_H=rh, REGION_W=rw, TOPK=topk, D_QK=d_qk, D_V=d_v,
        BLOCK_T=max(16, triton.next_power_of_2(rh * rw)),
        BLOCK_DQK=max(16, triton.next_power_of_2(d_qk)),
        BLOCK_DV=max(16, triton.next_power_of_2(d_v)),
        IEEE=q.dtype == torch.float32,
    )  # fmt: skip
    return out
