"""Bi-level routing attention: the vectorised backend against the float64 reference, forward and backward."""

from __future__ import annotations

import os

# the Triton kernel runs on CPU through the interpreter; set before the kernel module is imported
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from attnzoo_kernels.dispatch import BackendNotSupported  # noqa: E402
from attnzoo_kernels.ops.routing import (  # noqa: E402
    make_inputs,
    route_regions,
    routing_attention,
    routing_attention_reference,
    routing_attention_vectorised,
    routing_index,
)
from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def routing_problems(draw):
    n_win = draw(st.integers(1, 3))
    heads = draw(st.integers(1, 3))
    return {
        "batch": draw(st.integers(1, 2)),
        "height": n_win * draw(st.integers(1, 3)),
        "width": n_win * draw(st.integers(1, 3)),
        "c_qk": heads * draw(st.integers(1, 4)),
        "c_v": heads * draw(st.integers(1, 4)),
        "num_heads": heads,
        "n_win": n_win,
        "topk": draw(st.integers(1, n_win * n_win)),
        "scale": draw(st.sampled_from([None, 0.3, 1.7])),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def make(problem, dtype):
    gen = torch.Generator().manual_seed(problem["seed"])
    b, h, w = problem["batch"], problem["height"], problem["width"]
    q, k = (torch.randn(b, h, w, problem["c_qk"], generator=gen, dtype=torch.float64) for _ in range(2))
    v = torch.randn(b, h, w, problem["c_v"], generator=gen, dtype=torch.float64)
    grad = torch.randn(b, h, w, problem["c_v"], generator=gen, dtype=torch.float64)
    tensors = [t.to(dtype).requires_grad_() for t in (q, k, v)]
    options = {key: problem[key] for key in ("num_heads", "n_win", "topk", "scale")}
    return tensors, grad.to(dtype), options


def routing_margin(q, k, n_win, topk):
    """Smallest gap between the topk-th and the next adjacency score: near-ties may route differently."""
    adjacency, _ = route_regions(q.detach().double(), k.detach().double(), n_win=n_win, topk=topk)
    if topk == adjacency.shape[-1]:
        return float("inf")
    ranked = adjacency.sort(dim=-1, descending=True).values
    return (ranked[..., topk - 1] - ranked[..., topk]).min().item()


def forward_backward(fn, tensors, grad, options):
    out = fn(*tensors, **options)
    grads = torch.autograd.grad(out, tensors, grad)
    return out, grads


@settings(max_examples=40, deadline=None)
@given(routing_problems())
def test_vectorised_matches_reference_float64(problem):
    tensors, grad, options = make(problem, torch.float64)
    assume(routing_margin(tensors[0], tensors[1], options["n_win"], options["topk"]) > 1e-9)
    expected, expected_grads = forward_backward(routing_attention_reference, tensors, grad, options)
    out, grads = forward_backward(routing_attention_vectorised, tensors, grad, options)
    assert out.dtype == torch.float64 and out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(routing_problems())
def test_vectorised_float32_matches_float64_reference(problem):
    tensors, grad, options = make(problem, torch.float32)
    assume(routing_margin(tensors[0], tensors[1], options["n_win"], options["topk"]) > 1e-3)
    reference_inputs = [t.detach().double().requires_grad_() for t in tensors]
    expected, expected_grads = forward_backward(
        routing_attention_reference, reference_inputs, grad.double(), options
    )
    out, grads = forward_backward(routing_attention_vectorised, tensors, grad, options)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-5)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(routing_problems())
def test_routing_index_selects_the_reference_regions(problem):
    tensors, _, options = make(problem, torch.float64)
    q, k = tensors[0].detach(), tensors[1].detach()
    assume(routing_margin(q, k, options["n_win"], options["topk"]) > 1e-9)
    _, expected = route_regions(q, k, n_win=options["n_win"], topk=options["topk"])
    got = routing_index(q, k, n_win=options["n_win"], topk=options["topk"], scale=0.5)
    assert torch.equal(got.sort(-1).values, expected.sort(-1).values)


def plain_attention(q, k, v, num_heads, scale):
    """Global multi-head softmax attention over every token, from the textbook formula."""
    b, h, w, _ = q.shape
    split = lambda x: x.reshape(b, h * w, num_heads, -1).transpose(1, 2)
    weights = torch.softmax(split(q) @ split(k).transpose(-1, -2) * scale, dim=-1)
    return (weights @ split(v)).transpose(1, 2).reshape(b, h, w, -1)


@pytest.mark.parametrize("fn", [routing_attention_reference, routing_attention_vectorised])
def test_routing_to_every_region_is_global_attention(fn):
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 6, 4, 6, generator=gen, dtype=torch.float64) for _ in range(3))
    for n_win, topk in [(1, 1), (2, 4)]:
        out = fn(q, k, v, num_heads=3, n_win=n_win, topk=topk, scale=0.4)
        torch.testing.assert_close(out, plain_attention(q, k, v, 3, 0.4))


@pytest.mark.parametrize("fn", [routing_attention_reference, routing_attention_vectorised])
def test_each_region_attends_only_to_its_routed_region(fn):
    # four 2x2 regions; keys of region 3 align with every query, so topk=1 routes every region to it
    q = torch.ones(1, 4, 4, 2, dtype=torch.float64)
    k = -torch.ones(1, 4, 4, 2, dtype=torch.float64)
    k[:, 2:, 2:] = 1.0
    v = torch.arange(16, dtype=torch.float64).view(1, 4, 4, 1)
    out = fn(q, k, v, num_heads=1, n_win=2, topk=1)
    # equal keys inside region 3: every token gets the mean of region 3's values (10, 11, 14, 15)
    torch.testing.assert_close(out, torch.full_like(out, 12.5))


def test_dispatch_picks_the_vectorised_backend_on_cpu_and_serves_the_reference():
    args, kwargs = make_inputs(196)
    assert routing_attention.select("auto", *args, **kwargs).name == "torch"
    fast = routing_attention(*args, **kwargs)
    reference = routing_attention(*args, backend="reference", **kwargs)
    assert reference.dtype == torch.float32
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-5)
    with pytest.raises(BackendNotSupported, match="unknown backend"):
        routing_attention(*args, backend="nope", **kwargs)


def test_make_inputs_rounds_the_map_to_whole_windows():
    (q, k, v), kwargs = make_inputs(3136, dtype=torch.float64, requires_grad=True)
    assert q.shape == (1, 56, 56, 64) and q.dtype == torch.float64 and q.requires_grad
    assert kwargs["n_win"] == 7 and q.shape[1] % kwargs["n_win"] == 0
    (q, _, _), _ = make_inputs(1)
    assert q.shape[1] == 7


@pytest.mark.parametrize("fn", [routing_attention_reference, routing_attention_vectorised])
@pytest.mark.parametrize(
    ("shapes", "options", "message"),
    [
        (((1, 8, 8, 4),) * 3, {"num_heads": 2, "n_win": 3, "topk": 1}, "8x8 is not divisible by n_win=3"),
        (
            ((1, 6, 6, 4),) * 3,
            {"num_heads": 2, "n_win": 3, "topk": 10},
            r"topk=10 must lie in \[1, n_win\*\*2 = 9\]",
        ),
        (((1, 6, 6, 4),) * 3, {"num_heads": 3, "n_win": 3, "topk": 1}, "num_heads=3 must divide"),
        (((1, 6, 6, 4), (1, 6, 6, 2), (1, 6, 6, 4)), {"num_heads": 1, "n_win": 3, "topk": 1}, "same shape"),
        (((1, 6, 6, 4), (1, 6, 6, 4), (1, 3, 6, 4)), {"num_heads": 1, "n_win": 3, "topk": 1}, "v must share"),
        (((36, 4),) * 3, {"num_heads": 1, "n_win": 3, "topk": 1}, "channels-last maps"),
    ],
)
def test_bad_inputs_name_the_constraint(fn, shapes, options, message):
    q, k, v = (torch.randn(*shape) for shape in shapes)
    with pytest.raises(ValueError, match=message):
        fn(q, k, v, **options)


def test_compiles_without_graph_breaks():
    args, kwargs = make_inputs(196)
    compiled = torch.compile(routing_attention_vectorised, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(*args, **kwargs), routing_attention_vectorised(*args, **kwargs))


# ---- Triton kernel, on CPU through the interpreter ----------------------------------------------


@settings(max_examples=12, deadline=None)
@given(routing_problems(), st.sampled_from([torch.float32, torch.float16]))
def test_triton_matches_reference_and_writes_every_element(problem, dtype):
    from attnzoo_kernels.ops.routing.triton import routing_attention_triton

    tensors, _, options = make(problem, dtype)
    q, k, v = (t.detach() for t in tensors)
    # fp16 region means round coarsely: skip draws whose routing is nearly tied
    assume(
        routing_margin(q, k, options["n_win"], options["topk"]) > (5e-2 if dtype == torch.float16 else 1e-3)
    )
    poisoned = torch.full((*q.shape[:3], v.shape[-1]), float("nan"), dtype=dtype)
    out = routing_attention_triton(q, k, v, out=poisoned, **options)
    assert out is poisoned and not out.isnan().any()
    expected = routing_attention_reference(q.double(), k.double(), v.double(), **options)
    tolerance = {"rtol": 1e-2, "atol": 1e-2} if dtype == torch.float16 else {"rtol": 1e-4, "atol": 1e-5}
    torch.testing.assert_close(out.double(), expected, **tolerance)


def test_triton_reads_strided_slices_of_one_projection():
    from attnzoo_kernels.ops.routing.triton import routing_attention_triton

    gen = torch.Generator().manual_seed(5)
    qkv = torch.randn(2, 4, 6, 4 + 4 + 6, generator=gen)
    q, k, v = qkv.split([4, 4, 6], dim=-1)
    options = {"num_heads": 2, "n_win": 2, "topk": 2, "scale": 0.5}
    torch.testing.assert_close(
        routing_attention_triton(q, k, v, **options), routing_attention_vectorised(q, k, v, **options)
    )
