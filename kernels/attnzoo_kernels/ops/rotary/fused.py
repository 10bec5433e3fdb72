"""Fast PyTorch paths of the rotary family: closed forms, native dtype, no 3x3 or quaternion products."""

from __future__ import annotations

import torch
from torch import Tensor

from .naive import _TINY, check_quat_inputs, check_rope_inputs


def rope_torch(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """``x * cos + rotate_half(x) * sin`` in the dtype of ``x`` (the Hugging Face LLaMA formula).

    Without autograd, each half is written in place into one output buffer with half-width angle
    tables (about 2x faster on CPU than the textbook form, which ``out=`` cannot differentiate).
    """
    check_rope_inputs(x, cos, sin)
    half = x.shape[-1] // 2
    if torch.is_grad_enabled() and (x.requires_grad or cos.requires_grad or sin.requires_grad):
        rotated_half = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos.to(x.dtype) + rotated_half * sin.to(x.dtype)
    cos_half, sin_half = cos[..., :half].to(x.dtype), sin[..., :half].to(x.dtype)
    first, second = x[..., :half], x[..., half:]
    out = torch.empty(torch.broadcast_shapes(x.shape, cos.shape), dtype=x.dtype, device=x.device)
    torch.addcmul(first * cos_half, second, sin_half, value=-1, out=out[..., :half])
    torch.addcmul(second * cos_half, first, sin_half, out=out[..., half:])
    return out


def quat_rotation_torch(positions: Tensor, gate: Tensor, rot_factor: float) -> Tensor:
    """``Rz(g z) Ry(g y) Rx(g x) (1, 0, 0)`` in closed form: ``(cos gz cos gy, sin gz cos gy, -sin gy)``."""
    check_quat_inputs(positions, gate, "quat_rotation")
    angle_y = positions[..., 1] * rot_factor
    angle_z = positions[..., 2] * rot_factor
    cos_y = torch.cos(angle_y)
    turned = torch.stack(
        (torch.cos(angle_z) * cos_y, torch.sin(angle_z) * cos_y, -torch.sin(angle_y)), dim=-1
    )
    return turned * gate.to(positions.dtype).unsqueeze(-1)


def quat_relative_torch(
    positions_q: Tensor,
    positions_k: Tensor,
    gate_q: Tensor,
    gate_k: Tensor,
    rot_factor: float,
    axis: tuple[float, float, float] = (1.0, 0.0, 0.0),
) -> Tensor:
    """Rodrigues' closed form of ``<e, r e r*>``: ``cos t + (1 - cos t) (e . v)^2 / |v|^2`` with ``t = |v|``."""
    check_quat_inputs(positions_q, gate_q, "quat_relative")
    check_quat_inputs(positions_k, gate_k, "quat_relative")
    if positions_q.shape[0] != positions_k.shape[0]:
        raise ValueError(
            f"quat_relative: batch sizes differ ({positions_q.shape[0]} vs {positions_k.shape[0]})"
        )
    e = torch.tensor(axis, dtype=positions_q.dtype, device=positions_q.device)
    e = e / e.norm()
    offset = (positions_k.unsqueeze(1) - positions_q.unsqueeze(2)) * rot_factor
    squared = offset.pow(2).sum(-1)
    angle = torch.sqrt(torch.clamp(squared, min=_TINY))
    along = offset @ e
    cos_t = torch.cos(angle)
    # (1 - cos t) / t^2 = 2 sin^2(t/2) / t^2, finite at t = 0 where the pair is coincident
    one_minus_cos_over_sq = 0.5 * torch.special.sinc(angle / (2 * torch.pi)).pow(2)
    term = cos_t + one_minus_cos_over_sq * along.pow(2)
    return term * (gate_q.to(term.dtype).unsqueeze(2) * gate_k.to(term.dtype).unsqueeze(1))
