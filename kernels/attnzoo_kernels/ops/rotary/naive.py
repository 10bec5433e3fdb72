"""References for the rotary family, written from the equations and computed in float64.

RoPE (Su et al., RoFormer), in the *rotate-half* layout of Hugging Face LLaMA: channel ``i`` and
channel ``i + D/2`` form one plane, rotated by the angle ``m * theta**(-2i/D)`` of token position
``m``. The angle tables come in as ``cos``/``sin`` of shape ``(..., L, D)`` with both halves equal
(what ``LlamaRotaryEmbedding`` returns), so scaled variants of RoPE (linear, NTK, llama3) share the op::

    [x_i, x_{i+D/2}]  ->  [[cos a_i, -sin a_i], [sin a_i, cos a_i]] @ [x_i, x_{i+D/2}]

QuatRoPE (Zhou et al., arXiv 2603.24721) adds a 3-D rotation term for object tokens. Two forms:

* ``quat_rotation`` — the per-token term of the released *igre* code: the unit vector
  ``e = (1, 0, 0)`` turned by the Euler rotation ``Rz(g*z) @ Ry(g*y) @ Rx(g*x)`` of the token's
  object position ``(x, y, z)`` at one scalar frequency ``g``, times a 0/1 gate. The three channels are
  appended to query and key, so two object tokens gain the score term ``r_i . r_j``. ``Rx`` fixes ``e``:
  this form ignores ``x`` and is not a function of ``p_j - p_i`` alone.
* ``quat_relative`` — a relative form written from the paper's abstract (scores that depend on relative
  3-D position only; the method section's equations could not be read, see docs/models/quatrope.md):
  the pure quaternion of the offset ``v = g * (p_k - p_q)`` is turned into the unit quaternion
  ``r = exp(v / 2) = (cos(|v|/2), sin(|v|/2) v/|v|)``, which rotates the unit axis ``e`` by the sandwich
  product ``r e r*``; the term is ``<e, r e r*>`` times both tokens' gates.
"""

from __future__ import annotations

import torch
from torch import Tensor

_TINY = 1e-30  # below any squared offset that matters; keeps the norm's gradient finite at 0


def check_rope_inputs(x: Tensor, cos: Tensor, sin: Tensor) -> None:
    """Raise ``ValueError`` naming the constraint when ``x``, ``cos``, ``sin`` do not fit RoPE."""
    if x.dim() < 2:
        raise ValueError(f"rope: x must be at least 2-D (..., length, dim); got {tuple(x.shape)}")
    if x.shape[-1] % 2:
        raise ValueError(f"rope: the last dim of x must be even (rotate-half pairs); got {x.shape[-1]}")
    if cos.shape != sin.shape:
        raise ValueError(f"rope: cos and sin must have one shape; got {tuple(cos.shape)}, {tuple(sin.shape)}")
    if cos.shape[-1] != x.shape[-1] or cos.shape[-2] != x.shape[-2]:
        raise ValueError(
            f"rope: cos/sin must end in (length, dim) = {tuple(x.shape[-2:])}; got {tuple(cos.shape)}"
        )
    try:
        torch.broadcast_shapes(x.shape, cos.shape)
    except RuntimeError as exc:
        raise ValueError(f"rope: cos/sin {tuple(cos.shape)} do not broadcast to x {tuple(x.shape)}") from exc


def rope_reference(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate each (i, i + D/2) channel plane of ``x`` by the angle whose cosine/sine are given (float64)."""
    check_rope_inputs(x, cos, sin)
    half = x.shape[-1] // 2
    x64, c, s = x.double(), cos.double()[..., :half], sin.double()[..., :half]
    first, second = x64[..., :half], x64[..., half:]
    rotated_first = c * first - s * second
    rotated_second = s * first + c * second
    return torch.cat((rotated_first, rotated_second), dim=-1).to(x.dtype)


def check_quat_inputs(positions: Tensor, gate: Tensor, name: str) -> None:
    """``positions`` is ``(batch, length, 3)`` and ``gate`` is ``(batch, length)``."""
    if positions.dim() != 3 or positions.shape[-1] != 3:
        raise ValueError(f"{name}: positions must be (batch, length, 3); got {tuple(positions.shape)}")
    if not positions.is_floating_point():
        raise ValueError(f"{name}: positions must be floating point; got {positions.dtype}")
    if gate.shape != positions.shape[:2]:
        raise ValueError(
            f"{name}: gate must be (batch, length) = {tuple(positions.shape[:2])}; got {tuple(gate.shape)}"
        )


def _axis_rotation(angle: Tensor, axis: int) -> Tensor:
    """The 3x3 right-handed rotation about coordinate ``axis`` by ``angle`` (shape ``angle.shape + (3, 3)``)."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == 0:
        rows = ((one, zero, zero), (zero, c, -s), (zero, s, c))
    elif axis == 1:
        rows = ((c, zero, s), (zero, one, zero), (-s, zero, c))
    else:
        rows = ((c, -s, zero), (s, c, zero), (zero, zero, one))
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def quat_rotation_reference(positions: Tensor, gate: Tensor, rot_factor: float) -> Tensor:
    """Per-token QuatRoPE term of the released igre path, ``gate * Rz Ry Rx e`` with ``e = (1, 0, 0)``.

    ``positions``: ``(batch, length, 3)`` object coordinates ``(x, y, z)``; ``gate``: ``(batch, length)``
    (1 where the token carries the extension); ``rot_factor``: the scalar frequency ``g``.
    Returns ``(batch, length, 3)`` in the dtype of ``positions``.
    """
    check_quat_inputs(positions, gate, "quat_rotation")
    angles = positions.double() * rot_factor
    rotation = (
        _axis_rotation(angles[..., 2], 2)
        @ _axis_rotation(angles[..., 1], 1)
        @ _axis_rotation(angles[..., 0], 0)
    )
    base = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64, device=positions.device)
    turned = rotation @ base
    return (turned * gate.double().unsqueeze(-1)).to(positions.dtype)


def _hamilton(a: Tensor, b: Tensor) -> Tensor:
    """Quaternion product ``a b`` for ``(..., 4)`` tensors laid out ``(w, x, y, z)``."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        dim=-1,
    )


def quat_relative_reference(
    positions_q: Tensor,
    positions_k: Tensor,
    gate_q: Tensor,
    gate_k: Tensor,
    rot_factor: float,
    axis: tuple[float, float, float] = (1.0, 0.0, 0.0),
) -> Tensor:
    """Relative QuatRoPE term ``gate_q[i] gate_k[j] <e, r e r*>`` with ``r = exp(g (p_k[j] - p_q[i]) / 2)``.

    ``positions_q``: ``(batch, Lq, 3)``, ``positions_k``: ``(batch, Lk, 3)``, gates ``(batch, Lq)`` and
    ``(batch, Lk)``; ``axis``: the unit vector ``e`` (normalised here). Returns ``(batch, Lq, Lk)``.
    """
    check_quat_inputs(positions_q, gate_q, "quat_relative")
    check_quat_inputs(positions_k, gate_k, "quat_relative")
    if positions_q.shape[0] != positions_k.shape[0]:
        raise ValueError(
            f"quat_relative: batch sizes differ ({positions_q.shape[0]} vs {positions_k.shape[0]})"
        )
    offset = (positions_k.double().unsqueeze(1) - positions_q.double().unsqueeze(2)) * rot_factor
    norm = torch.sqrt(torch.clamp(offset.pow(2).sum(-1, keepdim=True), min=_TINY))
    direction = offset / norm
    half_angle = norm / 2
    rotor = torch.cat((torch.cos(half_angle), torch.sin(half_angle) * direction), dim=-1)
    conjugate = rotor * torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=torch.float64, device=rotor.device)
    e = torch.tensor(axis, dtype=torch.float64, device=rotor.device)
    e = e / e.norm()
    pure_e = torch.cat((torch.zeros(1, dtype=torch.float64, device=rotor.device), e)).expand_as(rotor)
    turned = _hamilton(_hamilton(rotor, pure_e), conjugate)[..., 1:]
    term = (turned * e).sum(-1)
    gates = gate_q.double().unsqueeze(2) * gate_k.double().unsqueeze(1)
    return (term * gates).to(positions_q.dtype)
