"""Rotary embeddings: RoPE (rotate-half, as Hugging Face LLaMA) and the 3-D rotation term of QuatRoPE.

* ``rope(x, cos, sin)`` rotates the channel planes ``(i, i + D/2)`` of ``x`` (``(..., L, D)``) by the
  angles whose cosine and sine ``LlamaRotaryEmbedding`` returns (``(..., L, D)``, broadcastable).
* ``quat_rotation(positions, gate, rot_factor)`` — the per-token term of QuatRoPE's released *igre*
  code, ``(batch, L, 3)``, appended to query and key of object tokens.
* ``quat_relative(positions_q, positions_k, gate_q, gate_k, rot_factor, axis=(1, 0, 0))`` — the
  relative quaternion term ``(batch, Lq, Lk)``, a function of ``p_k - p_q`` only.

``rope_cos_sin(positions, dim, theta)`` builds unscaled LLaMA angle tables, and
``official_rot_factor(head_dim, base)`` the scalar frequency of the released code, float32-rounded.
Backends: ``torch`` (closed forms in the input dtype), ``reference`` (float64, from the equations) and,
for ``rope`` on CUDA, ``triton`` (one fused kernel per row, forward and backward). The QuatRoPE terms
have no Triton kernel: they touch ``O(L)`` or ``O(n_obj^2)`` scalars, far below attention's cost.
"""

from __future__ import annotations

import torch

from ...dispatch import Op, triton_available, triton_devices
from .fused import quat_relative_torch, quat_rotation_torch, rope_torch
from .naive import quat_relative_reference, quat_rotation_reference, rope_reference

__all__ = [
    "make_inputs",
    "make_quat_relative_inputs",
    "make_quat_rotation_inputs",
    "official_rot_factor",
    "quat_relative",
    "quat_rotation",
    "rope",
    "rope_cos_sin",
]

rope = Op("rope", reference=rope_reference, doc="RoPE, rotate-half layout: x cos + rotate_half(x) sin.")
rope.register("torch", rope_torch, priority=10)
if triton_available() != "triton is not installed":
    from .triton_rope import rope_triton, rope_triton_reasons

    rope.register(
        "triton",
        rope_triton,
        priority=20,
        devices=triton_devices(),
        dtypes=(torch.float16, torch.bfloat16, torch.float32),
        check=rope_triton_reasons,
        available=triton_available,
        interpreted_on_cpu=True,
        compile_note="torch.autograd.Function around a Triton kernel: a graph break under torch.compile",
    )

quat_rotation = Op(
    "quat_rotation",
    reference=quat_rotation_reference,
    doc="QuatRoPE igre term: gate * Rz(g z) Ry(g y) Rx(g x) (1, 0, 0) per token.",
)
quat_rotation.register("torch", quat_rotation_torch, priority=10)

quat_relative = Op(
    "quat_relative",
    reference=quat_relative_reference,
    doc="Relative QuatRoPE term gate_i gate_j <e, r e r*>, r = exp(g (p_j - p_i) / 2).",
)
quat_relative.register("torch", quat_relative_torch, priority=10)


def rope_cos_sin(
    positions: torch.Tensor, dim: int, theta: float = 10000.0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unscaled LLaMA angle tables for integer ``positions`` ``(..., L)``: ``cos``, ``sin`` of ``(..., L, dim)``."""
    if dim % 2:
        raise ValueError(f"rope_cos_sin: dim must be even; got {dim}")
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim))
    angles = positions.double().unsqueeze(-1) * inv_freq
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def official_rot_factor(head_dim: int, base: float = 10000.0) -> float:
    """``base**(-3/head_dim)`` computed as the released code does (float32 tensors), as a Python float."""
    if head_dim < 4:
        raise ValueError(f"official_rot_factor: head_dim must be at least 4; got {head_dim}")
    exponent = torch.tensor(3, dtype=torch.int64).float() / head_dim
    return float(1.0 / (base**exponent))


def make_inputs(
    length: int,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    requires_grad: bool = False,
) -> tuple[tuple, dict]:
    """RoPE on a LLaMA-7B-like head layout at ``length`` tokens: B=1, 32 heads, D=128."""
    gen = torch.Generator().manual_seed(length)
    x = torch.randn(1, 32, length, 128, generator=gen, dtype=dtype).to(device).requires_grad_(requires_grad)
    cos, sin = rope_cos_sin(torch.arange(length), 128, dtype=dtype)
    return (x, cos.to(device), sin.to(device)), {}


def make_quat_rotation_inputs(
    length: int,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    requires_grad: bool = False,
) -> tuple[tuple, dict]:
    """The igre term for ``length`` tokens, every token an object, coordinates in a 10 m room."""
    gen = torch.Generator().manual_seed(length)
    positions = (torch.rand(1, length, 3, generator=gen, dtype=dtype) * 10 - 5).to(device)
    positions.requires_grad_(requires_grad)
    return (positions, torch.ones(1, length, dtype=dtype, device=device), official_rot_factor(128)), {}


def make_quat_relative_inputs(
    length: int,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    requires_grad: bool = False,
) -> tuple[tuple, dict]:
    """The relative term between ``length`` object tokens (all pairs)."""
    (positions, gate, factor), _ = make_quat_rotation_inputs(length, device=device, dtype=dtype)
    positions.requires_grad_(requires_grad)
    return (positions, positions, gate, gate, factor), {}
