"""Rotary family: the fast PyTorch paths against the float64 references, and the references' own equations."""

from __future__ import annotations

import math
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported, also when run alone

import pytest
import torch
from attnzoo_kernels.dispatch import BackendNotSupported
from attnzoo_kernels.ops import all_ops
from attnzoo_kernels.ops.rotary import (
    make_inputs,
    make_quat_relative_inputs,
    make_quat_rotation_inputs,
    official_rot_factor,
    quat_relative,
    quat_rotation,
    rope,
    rope_cos_sin,
)
from hypothesis import given, settings
from hypothesis import strategies as st

TOLERANCES = {torch.float64: dict(atol=1e-12, rtol=1e-10), torch.float32: dict(atol=2e-5, rtol=2e-5)}
DTYPES = st.sampled_from([torch.float64, torch.float32])


def _grads(outputs: torch.Tensor, inputs: tuple[torch.Tensor, ...], upstream: torch.Tensor) -> tuple:
    return torch.autograd.grad(outputs, inputs, upstream)


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 2),
    heads=st.integers(1, 5),
    length=st.integers(1, 9),
    half_dim=st.integers(1, 8),
    dtype=DTYPES,
    seed=st.integers(0, 2**16),
)
def test_rope_fast_matches_reference_forward_and_backward(batch, heads, length, half_dim, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    dim = 2 * half_dim
    x = torch.randn(batch, heads, length, dim, generator=gen, dtype=dtype, requires_grad=True)
    positions = torch.randint(0, 4096, (batch, length), generator=gen)
    cos, sin = rope_cos_sin(positions, dim, theta=10000.0, dtype=dtype)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    upstream = torch.randn(batch, heads, length, dim, generator=gen, dtype=dtype)

    fast = rope(x, cos, sin, backend="torch")
    reference = rope(x, cos, sin, backend="reference")
    torch.testing.assert_close(fast, reference, **TOLERANCES[dtype])
    with torch.no_grad():  # the inference path writes both halves into one buffer
        torch.testing.assert_close(rope(x, cos, sin, backend="torch"), reference, **TOLERANCES[dtype])
    torch.testing.assert_close(
        _grads(fast, (x,), upstream), _grads(reference, (x,), upstream), **TOLERANCES[dtype]
    )


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 3), length=st.integers(1, 9), dtype=DTYPES, seed=st.integers(0, 2**16))
def test_quat_rotation_fast_matches_reference_forward_and_backward(batch, length, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    positions = (torch.rand(batch, length, 3, generator=gen, dtype=dtype) * 20 - 10).requires_grad_(True)
    gate = (torch.rand(batch, length, generator=gen) > 0.3).to(dtype)
    factor = official_rot_factor(int(torch.randint(4, 256, (), generator=gen)))
    upstream = torch.randn(batch, length, 3, generator=gen, dtype=dtype)

    fast = quat_rotation(positions, gate, factor, backend="torch")
    reference = quat_rotation(positions, gate, factor, backend="reference")
    torch.testing.assert_close(fast, reference, **TOLERANCES[dtype])
    torch.testing.assert_close(
        _grads(fast, (positions,), upstream), _grads(reference, (positions,), upstream), **TOLERANCES[dtype]
    )


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 2),
    length_q=st.integers(1, 7),
    length_k=st.integers(1, 9),
    dtype=DTYPES,
    seed=st.integers(0, 2**16),
    axis=st.sampled_from([(1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (1.0, -2.0, 0.5)]),
)
def test_quat_relative_fast_matches_reference_forward_and_backward(
    batch, length_q, length_k, dtype, seed, axis
):
    gen = torch.Generator().manual_seed(seed)
    positions_k = torch.rand(batch, length_k, 3, generator=gen, dtype=dtype) * 8 - 4
    positions_q = torch.rand(batch, length_q, 3, generator=gen, dtype=dtype) * 8 - 4
    # coincident pairs, where the offset is zero, are the delicate case of both forms
    shared = min(length_q, length_k)
    positions_q[:, :shared:2] = positions_k[:, :shared:2]
    positions_q.requires_grad_(True)
    positions_k.requires_grad_(True)
    gate_q = (torch.rand(batch, length_q, generator=gen) > 0.3).to(dtype)
    gate_k = (torch.rand(batch, length_k, generator=gen) > 0.3).to(dtype)
    upstream = torch.randn(batch, length_q, length_k, generator=gen, dtype=dtype)
    args = (positions_q, positions_k, gate_q, gate_k, 0.8)

    fast = quat_relative(*args, axis, backend="torch")
    reference = quat_relative(*args, axis, backend="reference")
    torch.testing.assert_close(fast, reference, **TOLERANCES[dtype])
    inputs = (positions_q, positions_k)
    fast_grads, reference_grads = _grads(fast, inputs, upstream), _grads(reference, inputs, upstream)
    assert all(torch.isfinite(g).all() for g in fast_grads)
    torch.testing.assert_close(fast_grads, reference_grads, **TOLERANCES[dtype])


@settings(max_examples=10, deadline=None)
@given(
    batch=st.integers(1, 2),
    heads=st.integers(1, 3),
    length=st.integers(1, 7),
    half_dim=st.sampled_from([1, 3, 4, 8]),
    dtype=st.sampled_from([torch.float32, torch.float16]),
    shared_heads=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_rope_triton_matches_reference_forward_and_backward(
    batch, heads, length, half_dim, dtype, shared_heads, seed
):
    from attnzoo_kernels.ops.rotary.triton_rope import rope_launch

    gen = torch.Generator().manual_seed(seed)
    dim = 2 * half_dim
    x = torch.randn(batch, heads, length, dim, generator=gen).to(dtype).requires_grad_(True)
    cos, sin = rope_cos_sin(torch.randint(0, 4096, (batch, length), generator=gen), dim, dtype=dtype)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    if not shared_heads:
        cos, sin = (
            cos.expand(batch, heads, length, dim).contiguous(),
            sin.expand(batch, heads, length, dim).contiguous(),
        )
    upstream = torch.randn(batch, heads, length, dim, generator=gen).to(dtype)
    tolerance = dict(atol=2e-3, rtol=2e-3) if dtype == torch.float16 else TOLERANCES[torch.float32]

    # every element of a NaN-filled buffer must be written
    written = rope_launch(x.detach(), cos, sin, torch.full(x.shape, float("nan"), dtype=dtype))
    assert not written.isnan().any()
    fast = rope(x, cos, sin, backend="triton")
    reference = rope(x.double(), cos.double(), sin.double(), backend="reference")
    torch.testing.assert_close(written, fast, atol=0, rtol=0)
    torch.testing.assert_close(fast.double(), reference, **tolerance)
    (fast_grad,) = _grads(fast, (x,), upstream)
    x64 = x.detach().double().requires_grad_(True)
    (reference_grad,) = _grads(
        rope(x64, cos.double(), sin.double(), backend="reference"), (x64,), upstream.double()
    )
    torch.testing.assert_close(fast_grad.double(), reference_grad, **tolerance)


def test_rope_triton_is_never_auto_on_cpu_and_says_why_it_cannot_serve():
    x = torch.randn(1, 2, 3, 8)
    cos, sin = rope_cos_sin(torch.arange(3), 8)
    assert rope.select("auto", x, cos, sin).name == "torch"
    with pytest.raises(BackendNotSupported, match="4-D"):
        rope(x[0], cos, sin, backend="triton")
    with pytest.raises(BackendNotSupported, match="dtype torch.float64"):
        rope(x.double(), cos.double(), sin.double(), backend="triton")


def test_rope_scores_depend_on_relative_position_only():
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 1, 1, 16, generator=gen, dtype=torch.float64)

    def score(m: int, n: int) -> torch.Tensor:
        cos_m, sin_m = rope_cos_sin(torch.tensor([m]), 16, dtype=torch.float64)
        cos_n, sin_n = rope_cos_sin(torch.tensor([n]), 16, dtype=torch.float64)
        return (rope(q, cos_m, sin_m, backend="reference") * rope(k, cos_n, sin_n, backend="reference")).sum()

    torch.testing.assert_close(score(7, 3), score(107, 103))
    assert not torch.allclose(score(7, 3), score(7, 4))


def test_rope_pairs_channel_i_with_channel_i_plus_half():
    x = torch.zeros(1, 8, dtype=torch.float64)
    x[0, 1] = 1.0
    angle = 0.3
    cos = torch.full((1, 8), math.cos(angle), dtype=torch.float64)
    sin = torch.full((1, 8), math.sin(angle), dtype=torch.float64)
    out = rope(x, cos, sin, backend="reference")
    expected = torch.zeros(1, 8, dtype=torch.float64)
    expected[0, 1], expected[0, 5] = math.cos(angle), math.sin(angle)
    torch.testing.assert_close(out, expected)


def test_quat_rotation_is_the_euler_turn_of_the_x_axis_and_ignores_x():
    gen = torch.Generator().manual_seed(1)
    positions = torch.rand(1, 6, 3, generator=gen, dtype=torch.float64) * 10
    gate = torch.ones(1, 6, dtype=torch.float64)
    turned = quat_rotation(positions, gate, 0.3, backend="reference")
    torch.testing.assert_close(turned.norm(dim=-1), torch.ones(1, 6, dtype=torch.float64))
    moved_x = positions.clone()
    moved_x[..., 0] += 5.0
    torch.testing.assert_close(quat_rotation(moved_x, gate, 0.3, backend="reference"), turned)
    moved_y = positions.clone()
    moved_y[..., 1] += 1.0
    assert not torch.allclose(quat_rotation(moved_y, gate, 0.3, backend="reference"), turned)
    assert quat_rotation(positions, torch.zeros_like(gate), 0.3).abs().max() == 0


def test_quat_relative_depends_on_the_offset_only_and_uses_all_three_axes():
    gen = torch.Generator().manual_seed(2)
    positions = torch.rand(1, 5, 3, generator=gen, dtype=torch.float64) * 6
    gate = torch.ones(1, 5, dtype=torch.float64)
    axis = (1.0, 1.0, 1.0)
    term = quat_relative(positions, positions, gate, gate, 0.7, axis, backend="reference")
    shifted = positions + torch.tensor([3.0, -1.0, 2.5], dtype=torch.float64)
    torch.testing.assert_close(
        quat_relative(shifted, shifted, gate, gate, 0.7, axis, backend="reference"), term
    )
    torch.testing.assert_close(term.diagonal(dim1=1, dim2=2), torch.ones(1, 5, dtype=torch.float64))
    for coordinate in range(3):
        moved = positions.clone()
        moved[0, 0, coordinate] += 1.0
        changed = quat_relative(moved, moved, gate, gate, 0.7, axis, backend="reference")
        assert not torch.allclose(changed, term), f"coordinate {coordinate} has no effect"


def test_official_rot_factor_is_base_to_minus_three_over_head_dim():
    for head_dim in (16, 64, 128):
        assert official_rot_factor(head_dim) == pytest.approx(10000.0 ** (-3 / head_dim), rel=1e-6)
    assert official_rot_factor(128, base=500000.0) == pytest.approx(500000.0 ** (-3 / 128), rel=1e-6)


def test_bad_inputs_name_the_constraint():
    x = torch.randn(1, 2, 3, 5)
    with pytest.raises(ValueError, match="must be even"):
        rope(x, torch.randn(3, 5), torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"\(batch, length, 3\)"):
        quat_rotation(torch.randn(2, 4, 2), torch.ones(2, 4), 0.1)
    with pytest.raises(ValueError, match="gate must be"):
        quat_relative(torch.randn(1, 4, 3), torch.randn(1, 4, 3), torch.ones(1, 3), torch.ones(1, 4), 0.1)
    with pytest.raises(BackendNotSupported, match="unknown backend"):
        rope(torch.randn(1, 4, 8), *rope_cos_sin(torch.arange(4), 8), backend="cuda-graph")


def test_ops_are_registered_and_make_inputs_run():
    registered = all_ops()
    assert set(registered["rope"].backends) == {"reference", "torch", "triton"}
    for name in ("quat_rotation", "quat_relative"):
        assert set(registered[name].backends) == {"reference", "torch"}
    for op, maker in (
        (rope, make_inputs),
        (quat_rotation, make_quat_rotation_inputs),
        (quat_relative, make_quat_relative_inputs),
    ):
        args, kwargs = maker(5, dtype=torch.float64)
        assert op.select("auto", *args, **kwargs).name == "torch"
        torch.testing.assert_close(op(*args, **kwargs), op(*args, backend="reference", **kwargs))
