"""Gather-sparse attention (block and span forms): the gather backend against the dense-mask reference."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from attnzoo_kernels.ops.sparse import (
    gather,
    make_inputs,
    make_span_inputs,
    span_attention,
    span_attention_reference,
    sparse_attention,
    sparse_attention_reference,
)
from attnzoo_kernels.ops.sparse.gather import sparse_attention_gather
from hypothesis import given
from hypothesis import strategies as st
from kernel_checks import SETTINGS, assert_matches, attention_dims, grads_of, random_qkv

PATHS = ["gather", "gather_in_slices", "dense"]


@contextlib.contextmanager
def forced_path(path: str):
    """Force the gather backend's strategy: gather (in one or many slices) or masked dense SDPA."""
    saved = gather.DENSE_FRACTION, gather.GATHER_BUDGET
    gather.DENSE_FRACTION = 0.0 if path == "dense" else math.inf
    gather.GATHER_BUDGET = 1 if path == "gather_in_slices" else saved[1]
    try:
        yield
    finally:
        gather.DENSE_FRACTION, gather.GATHER_BUDGET = saved


def reference_grads(fn, inputs, cotangent, *extra, **kwargs):
    ref_inputs = [t.detach().double().requires_grad_() for t in inputs]
    return grads_of(fn, (*ref_inputs, *extra), cotangent, **kwargs)


@SETTINGS
@given(
    dims=attention_dims(max_len=30),
    block_size=st.integers(1, 7),
    query_block_size=st.sampled_from([1, 2, 5]),
    selected=st.integers(1, 4),
    causal=st.booleans(),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    path=st.sampled_from(PATHS),
)
def test_block_gather_matches_reference(dims, block_size, query_block_size, selected, causal, dtype, path):
    (q, k, v), cotangent = random_qkv(dims, dtype)
    gen = torch.Generator().manual_seed(dims["seed"] + 7)
    groups = math.ceil(dims["lq"] / query_block_size)
    blocks = math.ceil(dims["lk"] / block_size)
    # Repeats and -1 padding are drawn on purpose: a repeated block counts once.
    indices = torch.randint(-1, blocks + 1, (dims["batch"], dims["heads"], groups, selected), generator=gen)
    options = {"block_size": block_size, "query_block_size": query_block_size, "causal": causal}
    with forced_path(path):
        out, grads = grads_of(sparse_attention, (q, k, v, indices), cotangent, backend="gather", **options)
    ref, ref_grads = reference_grads(sparse_attention_reference, (q, k, v), cotangent, indices, **options)
    assert_matches(out, ref, dtype, "forward")
    for name, g, rg in zip("qkv", grads, ref_grads):
        assert_matches(g, rg, dtype, f"d{name}")


@SETTINGS
@given(
    dims=attention_dims(max_len=30),
    max_span=st.integers(1, 9),
    query_block_size=st.sampled_from([1, 3]),
    selected=st.integers(1, 4),
    causal=st.booleans(),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    path=st.sampled_from(PATHS),
)
def test_span_gather_matches_reference(dims, max_span, query_block_size, selected, causal, dtype, path):
    (q, k, v), cotangent = random_qkv(dims, dtype)
    gen = torch.Generator().manual_seed(dims["seed"] + 11)
    shape = (dims["batch"], dims["heads"], math.ceil(dims["lq"] / query_block_size), selected)
    starts = torch.randint(-1, dims["lk"] + 1, shape, generator=gen)  # overlapping spans included
    lengths = torch.randint(0, max_span + 1, shape, generator=gen)
    options = {"max_span": max_span, "query_block_size": query_block_size, "causal": causal}
    with forced_path(path):
        out, grads = grads_of(
            span_attention, (q, k, v, starts, lengths), cotangent, backend="gather", **options
        )
    ref, ref_grads = reference_grads(
        span_attention_reference, (q, k, v), cotangent, starts, lengths, **options
    )
    assert_matches(out, ref, dtype, "forward")
    for name, g, rg in zip("qkv", grads, ref_grads):
        assert_matches(g, rg, dtype, f"d{name}")


def test_selecting_every_block_is_dense_softmax_attention():
    q, k, v = (torch.randn(1, 2, 10, 4, dtype=torch.float64) for _ in range(3))
    every = torch.arange(4).expand(1, 2, 10, 4)
    out = sparse_attention(q, k, v, every, block_size=3, causal=True)
    dense = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert_matches(out, dense, torch.float64)


def test_query_without_a_selection_returns_zeros():
    q, k, v = (torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    indices = torch.tensor([[[[0], [-1], [1], [-1]]]])
    for backend, path in (("gather", "gather"), ("gather", "dense"), ("reference", "gather")):
        with forced_path(path):
            out = sparse_attention(q, k, v, indices, block_size=2, backend=backend)
        assert torch.equal(out[0, 0, 1], torch.zeros(4, dtype=torch.float64))
        assert all(torch.isfinite(g).all() for g in torch.autograd.grad(out.sum(), (q, k, v)))


def test_bad_selection_names_the_constraint():
    q = torch.randn(1, 2, 8, 4)
    with pytest.raises(ValueError, match=r"ceil\(Lq / query_block_size\)"):
        sparse_attention(q, q, q, torch.zeros(1, 2, 3, 2, dtype=torch.long), block_size=4, query_block_size=2)
    with pytest.raises(ValueError, match="integer"):
        sparse_attention(q, q, q, torch.zeros(1, 2, 8, 2), block_size=4)
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        sparse_attention(q, q, q, torch.zeros(1, 2, 8, 2, dtype=torch.long), block_size=0)


def test_make_inputs_selections_agree_with_reference_and_compile():
    for make, op in ((make_inputs, sparse_attention), (make_span_inputs, span_attention)):
        args, kwargs = make(130)
        assert op.select("auto", *args, **kwargs).name == "gather"
        assert_matches(op(*args, **kwargs), op(*args, backend="reference", **kwargs).double(), torch.float32)
    args, kwargs = make_inputs(70)
    compiled = torch.compile(sparse_attention_gather, backend="aot_eager", fullgraph=True)
    assert_matches(
        compiled(*args, **kwargs), sparse_attention_gather(*args, **kwargs).double(), torch.float32
    )


def test_env_var_forces_reference(monkeypatch):
    args, kwargs = make_inputs(64)
    monkeypatch.setenv("ATTNZOO_KERNEL_BACKEND", "reference")
    assert sparse_attention.select("auto", *args, **kwargs).name == "reference"
