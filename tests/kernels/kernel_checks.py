"""Shared helpers for the kernels tests (``TRITON_INTERPRET`` is set by this folder's conftest).

* :func:`poisoned` — a NaN-filled buffer, to prove that a kernel writes every output element.
* :func:`grads_of` — forward and backward of one backend with a fixed output cotangent.
* :func:`assert_matches` — tolerance per dtype when comparing a backend with the float64 reference.
* :data:`SETTINGS` and :func:`attention_dims` — hypothesis settings and a shape strategy (odd
  lengths, a single token, batch 1, many heads, GQA groups).
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOLERANCES = {
    torch.float64: {"atol": 1e-9, "rtol": 1e-7},
    torch.float32: {"atol": 2e-4, "rtol": 2e-4},
    torch.float16: {"atol": 2e-2, "rtol": 2e-2},
}


def poisoned(shape, *, dtype=torch.float32, device="cpu") -> torch.Tensor:
    """A buffer full of NaN: any element a kernel forgets to write fails the comparison."""
    return torch.full(tuple(shape), float("nan"), dtype=dtype, device=device)


def grads_of(fn, inputs, cotangent, **kwargs):
    """Run ``fn(*inputs, **kwargs)`` and backpropagate ``cotangent``; returns (out, grads of inputs
    that require grad)."""
    out = fn(*inputs, **kwargs)
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    grads = torch.autograd.grad(out, leaves, cotangent.to(out.dtype)) if leaves else ()
    return out, grads


def assert_matches(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str = "") -> None:
    """``actual`` (computed in ``dtype``) equals the float64 ``expected`` within ``dtype``'s tolerance;
    NaN anywhere fails."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    torch.testing.assert_close(
        actual.double(), expected.double(), **TOLERANCES[dtype], msg=lambda m: f"{what}: {m}"
    )


@st.composite
def attention_dims(draw, *, max_len: int = 33, gqa: bool = True):
    """batch, query heads, kv heads, Lq, Lk, head_dim, value dim and a seed."""
    kv_heads = draw(st.sampled_from([1, 2, 3]))
    group = draw(st.sampled_from([1, 2, 4])) if gqa else 1
    length = draw(st.one_of(st.just(1), st.integers(1, max_len)))
    return {
        "batch": draw(st.sampled_from([1, 2])),
        "heads": kv_heads * group,
        "kv_heads": kv_heads,
        "lq": length,
        "lk": draw(st.one_of(st.just(length), st.integers(1, max_len))),
        "dim": draw(st.sampled_from([1, 4, 8, 16])),
        "dv": draw(st.sampled_from([3, 8])),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def random_qkv(dims: dict, dtype: torch.dtype, *, same_dv: bool = False):
    """(q, k, v, cotangent) in float64 from ``dims``, cast to ``dtype``, requiring grad."""
    gen = torch.Generator().manual_seed(dims["seed"])
    b, h, hk, lq, lk, d = (dims[n] for n in ("batch", "heads", "kv_heads", "lq", "lk", "dim"))
    dv = d if same_dv else dims["dv"]
    q = torch.randn(b, h, lq, d, generator=gen, dtype=torch.float64)
    k = torch.randn(b, hk, lk, d, generator=gen, dtype=torch.float64)
    v = torch.randn(b, hk, lk, dv, generator=gen, dtype=torch.float64)
    cotangent = torch.randn(b, h, lq, dv, generator=gen, dtype=torch.float64)
    return [t.to(dtype).requires_grad_() for t in (q, k, v)], cotangent
