"""RoPE as one Triton kernel: each program rotates the (i, i + D/2) planes of one (batch, head, token) row.

The backward pass is the same kernel with ``sin`` negated (a rotation's transpose is its inverse), so
training costs one more launch and no saved activations beyond the angle tables.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .naive import check_rope_inputs


@triton.jit
def _rope_rows(
    x_ptr,
    cos_ptr,
    sin_ptr,
    out_ptr,
    heads,
    length,
    half,
    stride_xb,
    stride_xh,
    stride_xl,
    stride_xd,
    stride_cb,
    stride_ch,
    stride_cl,
    stride_cd,
    stride_sb,
    stride_sh,
    stride_sl,
    stride_sd,
    SIGN: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    token = row % length
    batch_head = row // length
    head = batch_head % heads
    batch = batch_head // heads
    offsets = tl.arange(0, BLOCK)
    keep = offsets < half

    x_row = x_ptr + batch * stride_xb + head * stride_xh + token * stride_xl
    first = tl.load(x_row + offsets * stride_xd, mask=keep, other=0.0).to(tl.float32)
    second = tl.load(x_row + (offsets + half) * stride_xd, mask=keep, other=0.0).to(tl.float32)
    cos_row = cos_ptr + batch * stride_cb + head * stride_ch + token * stride_cl
    sin_row = sin_ptr + batch * stride_sb + head * stride_sh + token * stride_sl
    cos = tl.load(cos_row + offsets * stride_cd, mask=keep, other=0.0).to(tl.float32)
    sin = tl.load(sin_row + offsets * stride_sd, mask=keep, other=0.0).to(tl.float32) * SIGN

    out_row = out_ptr + row * 2 * half
    tl.store(out_row + offsets, (first * cos - second * sin).to(out_ptr.dtype.element_ty), mask=keep)
    tl.store(out_row + half + offsets, (second * cos + first * sin).to(out_ptr.dtype.element_ty), mask=keep)


def rope_launch(x: Tensor, cos: Tensor, sin: Tensor, out: Tensor, *, inverse: bool = False) -> Tensor:
    """Write RoPE of the 4-D ``x`` into the contiguous ``out`` (``inverse`` rotates by ``-angle``)."""
    batch, heads, length, dim = x.shape
    cos, sin = cos.expand(x.shape), sin.expand(x.shape)
    half = dim // 2
    grid = (batch * heads * length,)
    _rope_rows[grid](
        x,
        cos,
        sin,
        out,
        heads,
        length,
        half,
        *x.stride(),
        *cos.stride(),
        *sin.stride(),
        SIGN=-1.0 if inverse else 1.0,
        BLOCK=triton.next_power_of_2(half),
    )
    return out


class _RopeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        ctx.save_for_backward(cos, sin)
        return rope_launch(x, cos, sin, torch.empty(x.shape, dtype=x.dtype, device=x.device))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        cos, sin = ctx.saved_tensors
        return (
            rope_launch(
                grad, cos, sin, torch.empty(grad.shape, dtype=grad.dtype, device=grad.device), inverse=True
            ),
            None,
            None,
        )


def rope_triton(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE of ``x`` ``(B, H, L, D)``; ``cos``/``sin`` broadcast to it and have equal halves (LLaMA tables)."""
    check_rope_inputs(x, cos, sin)
    return _RopeFunction.apply(x, cos, sin)


def rope_triton_reasons(x: Tensor, cos: Tensor, sin: Tensor) -> list[str]:
    """Why the Triton kernel cannot take these inputs (empty when it can)."""
    reasons = []
    if x.dim() != 4:
        reasons.append(f"x must be 4-D (batch, heads, length, dim); got {x.dim()}-D")
    if cos.requires_grad or sin.requires_grad:
        reasons.append("gradients for cos/sin are not computed")
    if x.shape[-1] % 2:
        reasons.append("the last dim of x must be even")
    return reasons
