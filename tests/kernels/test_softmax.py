"""Softmax attention: SDPA and flex backends against the float64 reference, forward and backward."""

from __future__ import annotations

import pytest
import torch
from attnzoo_kernels.dispatch import BackendNotSupported
from attnzoo_kernels.ops.softmax import make_inputs, softmax_attention, softmax_attention_reference
from attnzoo_kernels.ops.softmax.flex import flex_reasons, softmax_attention_flex
from attnzoo_kernels.ops.softmax.sdpa import softmax_attention_sdpa
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_checks import SETTINGS, assert_matches, attention_dims, grads_of, random_qkv


def _options(draw_kind: str, dims: dict, gen: torch.Generator, dtype: torch.dtype) -> dict:
    b, h, lq, lk = dims["batch"], dims["heads"], dims["lq"], dims["lk"]
    if draw_kind == "plain":
        return {}
    if draw_kind == "causal":
        return {"causal": True}
    if draw_kind == "bias":
        return {"bias": torch.randn(1, h, lq, lk, generator=gen, dtype=torch.float64).to(dtype), "scale": 0.7}
    if draw_kind == "bool_mask":
        return {"attn_mask": torch.rand(b, 1, lq, lk, generator=gen) > 0.4, "causal": bool(lk % 2)}
    # An additive float mask and a bias together.
    return {
        "attn_mask": torch.randn(lq, lk, generator=gen, dtype=torch.float64).to(dtype),
        "bias": torch.randn(b, h, lq, lk, generator=gen, dtype=torch.float64).to(dtype),
    }


KINDS = ["plain", "causal", "bias", "bool_mask", "float_mask_and_bias"]


@SETTINGS
@given(
    dims=attention_dims(), kind=st.sampled_from(KINDS), dtype=st.sampled_from([torch.float64, torch.float32])
)
def test_sdpa_matches_reference(dims, kind, dtype):
    (q, k, v), cotangent = random_qkv(dims, dtype)
    options = _options(kind, dims, torch.Generator().manual_seed(dims["seed"] + 1), dtype)
    out, grads = grads_of(softmax_attention, (q, k, v), cotangent, backend="sdpa", **options)
    ref_inputs = [t.detach().double().requires_grad_() for t in (q, k, v)]
    ref_options = {
        n: (t.double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t)
        for n, t in options.items()
    }
    ref, ref_grads = grads_of(softmax_attention_reference, ref_inputs, cotangent, **ref_options)
    assert_matches(out, ref, dtype, f"sdpa {kind} forward")
    for name, g, rg in zip("qkv", grads, ref_grads):
        assert_matches(g, rg, dtype, f"sdpa {kind} d{name}")


@settings(SETTINGS, max_examples=8)  # eager flex on CPU is slow
@given(dims=attention_dims(max_len=17), kind=st.sampled_from(KINDS))
def test_flex_forward_matches_reference_on_cpu(dims, kind):
    (q, k, v), _ = random_qkv(dims, torch.float64, same_dv=True)
    q, k, v = (t.detach() for t in (q, k, v))
    options = _options(kind, dims, torch.Generator().manual_seed(dims["seed"] + 1), torch.float64)
    with torch.no_grad():
        out = softmax_attention_flex(q, k, v, **options)
        ref = softmax_attention_reference(q, k, v, **options)
    assert_matches(out, ref, torch.float64, f"flex {kind}")


def test_flex_is_not_offered_on_cpu_and_lists_why():
    q, k, v = (torch.randn(1, 2, 5, 4, requires_grad=True) for _ in range(3))
    with pytest.raises(BackendNotSupported, match=r"device cpu not in \('cuda',\)"):
        softmax_attention(q, k, v, backend="flex")
    assert "flex attention has no backward on CPU (inputs require grad)" in flex_reasons(q, k, v)


def test_row_without_visible_key_is_zero_with_finite_grads():
    q, k, v = (torch.randn(1, 2, 4, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[2] = False
    for backend in ("reference", "sdpa"):
        out = softmax_attention(q, k, v, attn_mask=mask, backend=backend)
        assert torch.equal(out[:, :, 2], torch.zeros_like(out[:, :, 2]))
        grads = torch.autograd.grad(out.sum(), (q, k, v))
        assert all(torch.isfinite(g).all() for g in grads)


def test_causal_is_bottom_right_aligned_for_decoding():
    q = torch.randn(1, 1, 2, 4, dtype=torch.float64)
    k, v = torch.randn(1, 1, 5, 4, dtype=torch.float64), torch.randn(1, 1, 5, 3, dtype=torch.float64)
    causal = softmax_attention(q, k, v, causal=True, backend="sdpa")
    # The last query sees every key; the one before sees all but the last.
    assert_matches(causal[:, :, 1:], softmax_attention_reference(q[:, :, 1:], k, v), torch.float64)
    assert_matches(
        causal[:, :, :1], softmax_attention_reference(q[:, :, :1], k[:, :, :4], v[:, :, :4]), torch.float64
    )


def test_bad_shapes_name_the_constraint():
    q, k, v = torch.randn(1, 3, 4, 8), torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8)
    with pytest.raises(ValueError, match="multiple of key/value heads"):
        softmax_attention(q, k, v)
    with pytest.raises(ValueError, match="share head_dim"):
        softmax_attention(torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 6), torch.randn(1, 2, 4, 6))


def test_auto_picks_sdpa_and_env_var_forces_reference(monkeypatch):
    (q, k, v), kwargs = make_inputs(16)
    assert softmax_attention.select("auto", q, k, v, **kwargs).name == "sdpa"
    monkeypatch.setenv("ATTNZOO_KERNEL_BACKEND", "softmax_attention=reference")
    assert softmax_attention.select("auto", q, k, v, **kwargs).name == "reference"


def test_sdpa_path_compiles_without_graph_breaks():
    (q, k, v), kwargs = make_inputs(24)
    bias = torch.randn(1, 8, 24, 24)
    compiled = torch.compile(softmax_attention_sdpa, backend="aot_eager", fullgraph=True)
    assert_matches(
        compiled(q, k, v, bias=bias, **kwargs),
        softmax_attention_sdpa(q, k, v, bias=bias, **kwargs).double(),
        torch.float32,
    )


def test_a_mask_that_does_not_broadcast_names_the_constraint():
    q = torch.randn(1, 2, 8, 16)
    with pytest.raises(
        ValueError, match=r"attn_mask of shape \(5, 5\) must broadcast to \(batch, heads, Lq, Lk\)"
    ):
        softmax_attention(q, q, q, attn_mask=torch.ones(5, 5, dtype=torch.bool))


@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_attention_dropout_is_applied_and_seeded(backend):
    q = torch.randn(1, 2, 16, 8)
    plain = softmax_attention(q, q, q, backend=backend)
    torch.manual_seed(0)
    dropped = softmax_attention(q, q, q, dropout_p=0.5, backend=backend)
    torch.manual_seed(0)
    again = softmax_attention(q, q, q, dropout_p=0.5, backend=backend)
    assert not torch.allclose(dropped, plain)
    torch.testing.assert_close(dropped, again)


def test_flex_refuses_dropout():
    from attnzoo_kernels.ops.softmax.flex import flex_reasons

    q = torch.randn(1, 2, 4, 8)
    assert "flex attention has no attention dropout" in flex_reasons(q, q, q, dropout_p=0.1)
