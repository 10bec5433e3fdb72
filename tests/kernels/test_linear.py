"""Linear attention: chunked and Triton (interpreted) backends, the recurrent step and the feature maps."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported, also when run alone

import pytest  # noqa: E402
import torch  # noqa: E402
from attnzoo_kernels.dispatch import BackendNotSupported  # noqa: E402
from attnzoo_kernels.ops.linear import (  # noqa: E402
    EcoFormerHash,
    EluPlusOne,
    FavorPlus,
    FeatureMap,
    chunked,
    linear_attention,
    linear_attention_reference,
    linear_attention_step,
    make_inputs,
)
from attnzoo_kernels.ops.linear.chunked import linear_attention_chunked  # noqa: E402
from attnzoo_kernels.ops.linear.triton import causal_linear_triton_forward  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from kernel_checks import SETTINGS, assert_matches, grads_of, poisoned  # noqa: E402


def feature_map(kind: str, heads: int, dim: int, dtype: torch.dtype, seed: int):
    if kind == "elu":
        return "elu"
    if kind == "favor":
        return FavorPlus.random(dim, 2 * dim + 3, seed=seed, dtype=dtype)
    return EcoFormerHash.random(
        heads, dim, bits=6, anchors=5, seed=seed, dtype=dtype, sigma=None if kind == "hash_seq" else 0.8
    )


@st.composite
def problems(draw, max_len: int = 40):
    length = draw(st.one_of(st.just(1), st.integers(1, max_len)))
    return {
        "batch": draw(st.sampled_from([1, 2])),
        "heads": draw(st.sampled_from([1, 3, 6])),
        "lq": length,
        "lk": draw(st.one_of(st.just(length), st.integers(1, max_len))),
        "dim": draw(st.sampled_from([4, 8, 16])),
        "dv": draw(st.sampled_from([3, 8])),
        "causal": draw(st.booleans()),
        "feature_map": draw(st.sampled_from(["elu", "favor", "hash", "hash_seq"])),
        "chunk_size": draw(st.sampled_from([1, 5, 16, 64])),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def build(p, dtype):
    gen = torch.Generator().manual_seed(p["seed"])
    lk = p["lq"] if p["causal"] else p["lk"]
    b, h, lq, d, dv = p["batch"], p["heads"], p["lq"], p["dim"], p["dv"]
    q = torch.randn(b, h, lq, d, generator=gen, dtype=torch.float64)
    k = torch.randn(b, h, lk, d, generator=gen, dtype=torch.float64)
    v = torch.randn(b, h, lk, dv, generator=gen, dtype=torch.float64)
    cotangent = torch.randn(b, h, lq, dv, generator=gen, dtype=torch.float64)
    return [t.to(dtype).requires_grad_() for t in (q, k, v)], cotangent


class HashedIn(FeatureMap):
    """Hash codes computed in the backend's dtype, then upcast: a projection within rounding of zero
    flips its sign between dtypes, so the float64 reference must see the same codes."""

    def __init__(self, inner: FeatureMap, dtype: torch.dtype) -> None:
        self.inner, self.dtype = inner, dtype
        self.token_local = inner.token_local

    def __call__(self, x, *, is_query):
        return self.inner(x.to(self.dtype), is_query=is_query).to(x.dtype)


def reference_of(p, inputs, cotangent):
    ref_inputs = [t.detach().double().requires_grad_() for t in inputs]
    dtype = inputs[0].dtype
    if p["feature_map"].startswith("hash") and dtype != torch.float64:
        fm = HashedIn(feature_map(p["feature_map"], p["heads"], p["dim"], dtype, p["seed"]), dtype)
    else:
        fm = feature_map(p["feature_map"], p["heads"], p["dim"], torch.float64, p["seed"])
    return grads_of(linear_attention_reference, ref_inputs, cotangent, feature_map=fm, causal=p["causal"])


@SETTINGS
@given(
    p=problems(),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    slice_tokens=st.sampled_from([1, 12, 512]),
)
def test_chunked_matches_reference(p, dtype, slice_tokens):
    inputs, cotangent = build(p, dtype)
    fm = feature_map(p["feature_map"], p["heads"], p["dim"], dtype, p["seed"])
    saved = chunked.SLICE_TOKENS
    chunked.SLICE_TOKENS = slice_tokens  # 1: one chunk per slice; 512: one slice
    try:
        out, grads = grads_of(
            linear_attention,
            inputs,
            cotangent,
            backend="chunked",
            feature_map=fm,
            causal=p["causal"],
            chunk_size=p["chunk_size"],
        )
    finally:
        chunked.SLICE_TOKENS = saved
    ref, ref_grads = reference_of(p, inputs, cotangent)
    assert_matches(out, ref, dtype, "forward")
    for name, g, rg in zip("qkv", grads, ref_grads):
        assert_matches(g, rg, dtype, f"d{name}")


@settings(SETTINGS, max_examples=12)
@given(p=problems(max_len=36), dtype=st.sampled_from([torch.float32, torch.float16]))
def test_triton_interpreted_matches_reference(p, dtype):
    p = {
        **p,
        "causal": True,
        "feature_map": "hash" if p["feature_map"].startswith("hash") else p["feature_map"],
    }
    if dtype == torch.float16 and p["feature_map"] == "favor":
        p["feature_map"] = "elu"  # FAVOR+ key features overflow float16 by design (see FavorPlus)
    inputs, cotangent = build(p, dtype)
    fm = feature_map(p["feature_map"], p["heads"], p["dim"], dtype, p["seed"])
    out, grads = grads_of(
        linear_attention,
        inputs,
        cotangent,
        backend="triton",
        feature_map=fm,
        causal=True,
        chunk_size=p["chunk_size"],
    )
    ref, ref_grads = reference_of(p, inputs, cotangent)
    assert_matches(out, ref, dtype, "forward")
    for name, g, rg in zip("qkv", grads, ref_grads):
        assert_matches(g, rg, dtype, f"d{name}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("dv,block_d", [(5, None), (37, 16)])  # 37 = three value blocks, the last partial
def test_triton_kernel_writes_every_output_element(dtype, dv, block_d):
    gen = torch.Generator().manual_seed(3)
    fq, fk = (torch.rand(2, 3, 37, 12, generator=gen).to(dtype) for _ in range(2))
    v = torch.randn(2, 3, 37, dv, generator=gen).to(dtype)
    out = poisoned((2, 3, 37, dv), dtype=dtype)
    causal_linear_triton_forward(fq, fk, v, eps=1e-6, chunk_size=16, out=out, block_d=block_d)
    sim = torch.tril(fq.double() @ fk.double().transpose(-1, -2))
    expected = (sim @ v.double()) / (sim.sum(-1, keepdim=True) + 1e-6)
    assert_matches(out, expected, dtype, "triton kernel")


@settings(SETTINGS, max_examples=15)
@given(p=problems(max_len=20))
def test_recurrent_step_reproduces_causal_attention(p):
    p = {**p, "causal": True, "feature_map": "hash" if p["feature_map"] == "hash_seq" else p["feature_map"]}
    (q, k, v), cotangent = build(p, torch.float64)
    fm = feature_map(p["feature_map"], p["heads"], p["dim"], torch.float64, p["seed"])
    state, outs = None, []
    for t in range(q.shape[2]):
        out, state = linear_attention_step(q[:, :, t], k[:, :, t], v[:, :, t], state, feature_map=fm)
        outs.append(out)
    stepped = torch.stack(outs, dim=2)
    ref, ref_grads = reference_of(p, (q, k, v), cotangent)
    assert_matches(stepped, ref, torch.float64, "step forward")
    grads = torch.autograd.grad(stepped, (q, k, v), cotangent)
    for name, g, rg in zip("qkv", grads, ref_grads):
        assert_matches(g, rg, torch.float64, f"step d{name}")


def test_step_refuses_a_sequence_dependent_hash():
    fm = EcoFormerHash.random(2, 8, sigma=None)
    x = torch.randn(1, 2, 8)
    with pytest.raises(ValueError, match="not token-local"):
        linear_attention_step(x, x, x, feature_map=fm)


def test_favor_plus_approximates_softmax_attention():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (0.5 * torch.randn(1, 1, 24, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    fm = FavorPlus.random(8, 8192, seed=1, dtype=torch.float64, eps=0.0)
    approx = linear_attention(q, k, v, feature_map=fm, backend="chunked")
    exact = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1) @ v
    assert (approx - exact).abs().max() < 0.05
    # A different feature map (elu+1) is far from softmax attention, so the check has teeth.
    assert (linear_attention(q, k, v, feature_map="elu") - exact).abs().max() > 0.05


def test_elu_plus_one_is_elu_plus_one_in_value_and_gradient():
    x = torch.linspace(-30, 30, 1001, dtype=torch.float64, requires_grad=True)
    ours = EluPlusOne()(x, is_query=True)
    torch_elu = torch.nn.functional.elu(x) + 1
    assert_matches(ours, torch_elu.detach(), torch.float64)
    (g1,), (g2,) = torch.autograd.grad(ours.sum(), x), torch.autograd.grad(torch_elu.sum(), x)
    assert_matches(g1, g2, torch.float64)


def test_ecoformer_similarity_is_code_inner_product_plus_bias():
    fm = EcoFormerHash.random(2, 8, bits=6, anchors=5, seed=4, sigma=0.7, dtype=torch.float64)
    x = torch.randn(1, 2, 9, 8, dtype=torch.float64)
    codes = fm.codes(x)
    assert set(codes.unique().tolist()) <= {-1.0, 1.0}
    features = fm(x, is_query=True)
    assert features.shape[-1] == 7
    assert_matches(
        features @ features.transpose(-1, -2), codes @ codes.transpose(-1, -2) + 7.0, torch.float64
    )


def test_ecoformer_codes_pass_gradient_straight_through_inside_the_clip():
    fm = EcoFormerHash.random(1, 4, bits=3, anchors=4, seed=2, sigma=0.5, dtype=torch.float64)
    x = torch.randn(1, 1, 6, 4, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(fm.codes(x).sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_triton_refuses_non_causal_and_is_never_auto_on_cpu():
    (q, k, v), kwargs = make_inputs(32)
    assert linear_attention.select("auto", q, k, v, **kwargs).name == "chunked"
    with pytest.raises(BackendNotSupported, match="causal form only"):
        linear_attention(q, k, v, causal=False, backend="triton")
    with pytest.raises(BackendNotSupported, match="dtype"):
        linear_attention(q.double(), k.double(), v.double(), causal=True, backend="triton")


def test_bad_inputs_name_the_constraint():
    x = torch.randn(1, 2, 5, 4)
    with pytest.raises(ValueError, match="causal needs as many queries as keys"):
        linear_attention(x, torch.randn(1, 2, 6, 4), torch.randn(1, 2, 6, 4), causal=True)
    with pytest.raises(ValueError, match="unknown feature_map"):
        linear_attention(x, x, x, feature_map="relu")


def test_env_var_forces_a_backend(monkeypatch):
    (q, k, v), kwargs = make_inputs(16)
    monkeypatch.setenv("ATTNZOO_KERNEL_BACKEND", "linear_attention=reference")
    assert linear_attention.select("auto", q, k, v, **kwargs).name == "reference"


def test_compile_traces_the_chunked_path_and_breaks_the_graph_at_triton():
    (q, k, v), kwargs = make_inputs(40)
    compiled = torch.compile(linear_attention_chunked, backend="aot_eager", fullgraph=True)
    expected = linear_attention_chunked(q, k, v, **kwargs)
    assert_matches(compiled(q, k, v, chunk_size=16, **kwargs), expected.double(), torch.float32)
    through_triton = torch.compile(
        lambda *a: linear_attention(*a, backend="triton", **kwargs), backend="aot_eager"
    )
    assert_matches(through_triton(q, k, v), expected.double(), torch.float32)
