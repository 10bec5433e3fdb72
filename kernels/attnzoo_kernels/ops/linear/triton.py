"""Triton kernel for causal chunked linear attention (the hot path of decoding-style models).

One program per (batch, head, block of value columns) walks the sequence chunk by chunk, keeping
the running sums S = Σ φ(k_j) v_jᵀ (F x block) and z = Σ φ(k_j) in registers; within a chunk it uses the masked
C x C similarities. The feature map runs in PyTorch before the kernel. Backward recomputes through
the chunked PyTorch path (the kernel is forward-only), so training works at the chunked path's
memory cost, in float32. Products accumulate in float32 with IEEE precision (no TF32). The launch is hidden
from torch.compile on purpose (``torch.compiler.disable``): a graph break.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .chunked import causal_linear_from_features
from .feature_maps import FeatureMap, resolve_feature_map
from .naive import check_linear_inputs

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton is a Linux dependency
    triton = None

MAX_FEATURES = 256

if triton is not None:

    @triton.jit
    def _causal_linear_fwd_kernel(
        FQ, FK, V, O,
        length, features, dv,
        eps,
        BLOCK_C: tl.constexpr, BLOCK_F: tl.constexpr, BLOCK_D: tl.constexpr,
    ):  # fmt: skip
        pid = tl.program_id(0).to(tl.int64)  # offsets past 2**31 elements on large batches
        pid_d = tl.program_id(1)
        fq_ptr = FQ + pid * length * features
        fk_ptr = FK + pid * length * features
        v_ptr = V + pid * length * dv
        o_ptr = O + pid * length * dv
        offs_c = tl.arange(0, BLOCK_C)
        offs_f = tl.arange(0, BLOCK_F)
        offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
        f_ok = offs_f < features
        d_ok = offs_d < dv
        lower = offs_c[:, None] >= offs_c[None, :]
        kv = tl.zeros((BLOCK_F, BLOCK_D), dtype=tl.float32)
        key_sum = tl.zeros((BLOCK_F,), dtype=tl.float32)
        for start in range(0, length, BLOCK_C):
            rows = start + offs_c
            r_ok = rows < length
            fq = tl.load(fq_ptr + rows[:, None] * features + offs_f[None, :],
                         mask=r_ok[:, None] & f_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
            fk = tl.load(fk_ptr + rows[:, None] * features + offs_f[None, :],
                         mask=r_ok[:, None] & f_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
            v = tl.load(v_ptr + rows[:, None] * dv + offs_d[None, :],
                        mask=r_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)  # fmt: skip
            sim = tl.dot(fq, tl.trans(fk), input_precision="ieee")
            sim = tl.where(lower, sim, 0.0)
            numerator = tl.dot(sim, v, input_precision="ieee") + tl.dot(fq, kv, input_precision="ieee")
            denominator = tl.sum(sim, axis=1) + tl.sum(fq * key_sum[None, :], axis=1)
            out = numerator / (denominator[:, None] + eps)
            tl.store(o_ptr + rows[:, None] * dv + offs_d[None, :], out.to(O.dtype.element_ty),
                     mask=r_ok[:, None] & d_ok[None, :])  # fmt: skip
            kv += tl.dot(tl.trans(fk), v, input_precision="ieee")
            key_sum += tl.sum(fk, axis=0)


def _block(n: int) -> int:
    return max(16, 1 << (max(n, 1) - 1).bit_length())


def causal_linear_triton_forward(
    fq: Tensor,
    fk: Tensor,
    v: Tensor,
    *,
    eps: float,
    chunk_size: int = 64,
    out: Tensor | None = None,
    block_d: int | None = None,
) -> Tensor:
    """Launch the kernel on features (B, H, L, F) and values (B, H, L, Dv); writes into ``out`` if given.

    The grid is (B·H, ceil(Dv / block_d)): value columns are independent given the features, so
    programs split them (each recomputes the chunk's similarities, which are cheap) to occupy more
    of the GPU when B·H is small."""
    b, h, length, features = fq.shape
    dv = v.shape[-1]
    fq, fk, v = fq.contiguous(), fk.contiguous(), v.contiguous()
    if out is None:
        out = torch.empty(b, h, length, dv, device=v.device, dtype=v.dtype)
    if out.shape != (b, h, length, dv) or not out.is_contiguous():
        raise ValueError(
            f"causal_linear_triton_forward: out must be a contiguous {(b, h, length, dv)} tensor"
        )
    block_c = _block(min(chunk_size, max(length, 16)))
    block_d = block_d or min(64, _block(dv))
    if block_d < 16 or block_d & (block_d - 1):
        raise ValueError(f"causal_linear_triton_forward: block_d must be a power of two >= 16; got {block_d}")
    grid = (b * h, triton.cdiv(dv, block_d))
    _causal_linear_fwd_kernel[grid](
        fq, fk, v, out, length, features, dv, eps,
        BLOCK_C=block_c, BLOCK_F=_block(features), BLOCK_D=block_d,
    )  # fmt: skip
    return out


class _CausalLinearTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fq: Tensor, fk: Tensor, v: Tensor, eps: float, chunk_size: int) -> Tensor:
        ctx.save_for_backward(fq, fk, v)
        ctx.eps, ctx.chunk_size = eps, chunk_size
        return causal_linear_triton_forward(fq, fk, v, eps=eps, chunk_size=chunk_size)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        # Recompute in float32 (as the kernel accumulates), then return grads in the inputs' dtypes.
        saved = ctx.saved_tensors
        fq, fk, v = (t.detach().float().requires_grad_() for t in saved)
        with torch.enable_grad():
            out = causal_linear_from_features(fq, fk, v, chunk_size=ctx.chunk_size, eps=ctx.eps)
            grads = torch.autograd.grad(out, (fq, fk, v), grad_out.float())
        return (*(g.to(t.dtype) for g, t in zip(grads, saved)), None, None)


@torch.compiler.disable
def linear_attention_triton(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    feature_map: str | FeatureMap = "elu",
    causal: bool = False,
    eps: float = 1e-6,
    chunk_size: int = 64,
) -> Tensor:
    """Causal linear attention with the Triton kernel; same contract as the reference."""
    check_linear_inputs(q, k, v, causal)
    fm = resolve_feature_map(feature_map)
    fq, fk = fm(q, is_query=True), fm(k, is_query=False)
    return _CausalLinearTriton.apply(fq, fk, v, eps, chunk_size)


def triton_reasons(
    q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, feature_map="elu", **kwargs
) -> list[str]:
    reasons = []
    if not causal:
        reasons.append("the Triton kernel implements the causal form only (non-causal is one matmul)")
    features = resolve_feature_map(feature_map)(q[..., :1, :].detach(), is_query=True).shape[-1]
    if features > MAX_FEATURES or v.shape[-1] > MAX_FEATURES:
        reasons.append(f"feature and value dims must be <= {MAX_FEATURES}")
    if causal and q.dim() == 4 and k.dim() == 4 and q.shape[2] != k.shape[2]:
        reasons.append("causal needs Lq == Lk")
    return reasons
