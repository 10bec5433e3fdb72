"""relative_attention: the skewing trick against the reference that builds the (L, L, D) relative tensor."""

from __future__ import annotations

import os

# The Triton backend runs on CPU tensors through the interpreter; set before triton is imported.
os.environ["TRITON_INTERPRET"] = "1"

import math  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from attnzoo_kernels.dispatch import BackendNotSupported  # noqa: E402
from attnzoo_kernels.ops.relative import chunked, make_inputs, naive, relative_attention  # noqa: E402
from attnzoo_kernels.ops.relative.chunked import (  # noqa: E402
    offset_table,
    relative_attention_chunked,
    relative_attention_skew,
    skewed_relative_logits,
)
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TOLERANCES = {torch.float64: dict(atol=1e-10, rtol=1e-10), torch.float32: dict(atol=2e-5, rtol=2e-4)}


def draw_inputs(batch, heads, length, depth, max_rel, causal, per_head, dtype, seed, value_depth=None):
    generator = torch.Generator().manual_seed(seed)
    entries = max_rel if causal else 2 * max_rel - 1
    shape = (heads, entries, depth) if per_head else (entries, depth)

    def draw(*size):
        return torch.randn(*size, generator=generator, dtype=torch.float64).to(dtype).requires_grad_(True)

    q, k = draw(batch, heads, length, depth), draw(batch, heads, length, depth)
    v = draw(batch, heads, length, value_depth or depth)
    return q, k, v, draw(*shape)


def poison_chunked_buffers(monkeypatch):
    """Chunked outputs start as NaN, so a row the kernel forgets to write fails the comparison."""
    monkeypatch.setattr(chunked, "_new_buffer", lambda *size, **kw: torch.full(size, math.nan, **kw))


def test_offset_table_places_each_offset():
    rel = torch.arange(3 * 2, dtype=torch.float64).view(3, 2)  # causal, R = 3: offsets -2, -1, 0
    table = offset_table(rel, 5, causal=True)
    assert table.shape == (9, 2)
    for offset in range(-4, 5):
        expected = rel[offset + 2] if -2 <= offset <= 0 else torch.zeros(2, dtype=torch.float64)
        torch.testing.assert_close(table[offset + 4], expected)
    short = offset_table(rel, 2, causal=True)  # R > L: the table is cropped
    torch.testing.assert_close(short[:2], rel[1:])


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("per_head", [False, True])
@pytest.mark.parametrize("length,max_rel", [(1, 1), (6, 3), (7, 12), (9, 9)])
def test_skewed_logits_equal_full_relative_tensor(causal, per_head, length, max_rel):
    q, _, _, rel = draw_inputs(2, 3, length, 4, max_rel, causal, per_head, torch.float64, seed=length)
    skewed = skewed_relative_logits(q, rel, causal=causal)
    full = naive.relative_logits_reference(q, rel, causal=causal)
    if causal:
        past = torch.ones(length, length, dtype=torch.bool).tril()
        skewed, full = skewed[..., past], full[..., past]
    torch.testing.assert_close(skewed, full, atol=1e-12, rtol=1e-12)


def test_reference_follows_the_definition_elementwise():
    q, k, v, rel = draw_inputs(1, 2, 5, 3, 2, True, True, torch.float64, seed=1)
    out = naive.relative_attention_reference(q, k, v, rel, causal=True, scale=0.7)
    for h in range(2):
        for i in range(5):
            logits = []
            for j in range(i + 1):
                distance = i - j
                position = rel[h, 1 - distance] if distance < 2 else torch.zeros(3, dtype=torch.float64)
                logits.append(0.7 * (q[0, h, i] @ k[0, h, j] + q[0, h, i] @ position))
            weights = torch.softmax(torch.stack(logits), 0)
            torch.testing.assert_close(out[0, h, i], weights @ v[0, h, : i + 1])


FAST_PATHS = {
    "skew": relative_attention_skew,
    "chunked-3": lambda *a, **kw: relative_attention_chunked(*a, block_size=3, **kw),
    "chunked-1": lambda *a, **kw: relative_attention_chunked(*a, block_size=1, **kw),
    "dispatch-torch": lambda *a, **kw: relative_attention(*a, backend="torch", **kw),
}


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 2),
    heads=st.sampled_from([1, 3, 8]),
    length=st.integers(1, 13),
    depth=st.sampled_from([1, 4, 8]),
    max_rel=st.integers(1, 16),
    causal=st.booleans(),
    per_head=st.booleans(),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    path=st.sampled_from(sorted(FAST_PATHS)),
    seed=st.integers(0, 2**16),
)
def test_fast_paths_match_reference_forward_and_backward(
    batch, heads, length, depth, max_rel, causal, per_head, dtype, path, seed
):
    with pytest.MonkeyPatch.context() as monkeypatch:
        poison_chunked_buffers(monkeypatch)
        inputs = draw_inputs(
            batch, heads, length, depth, max_rel, causal, per_head, dtype, seed, value_depth=depth + 1
        )
        reference_inputs = [t.detach().double().requires_grad_(True) for t in inputs]
        expected = naive.relative_attention_reference(*reference_inputs, causal=causal)
        out = FAST_PATHS[path](*inputs, causal=causal)
        assert out.dtype == dtype and out.shape == expected.shape
        torch.testing.assert_close(out.double(), expected, **TOLERANCES[dtype])
        grad = torch.randn(
            expected.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64
        )
        expected_grads = torch.autograd.grad(expected, reference_inputs, grad)
        grads = torch.autograd.grad(out, inputs, grad.to(dtype))
        for name, got, want in zip("q k v rel_emb".split(), grads, expected_grads):
            torch.testing.assert_close(
                got.double(), want, **TOLERANCES[dtype], msg=lambda m, n=name: f"d{n}: {m}"
            )


@pytest.mark.parametrize("path", sorted(FAST_PATHS))
def test_causal_outputs_ignore_the_future(path):
    q, k, v, rel = (t.detach() for t in draw_inputs(1, 2, 11, 4, 5, True, True, torch.float64, seed=3))
    out = FAST_PATHS[path](q, k, v, rel, causal=True)
    cut = 6
    changed = [t.clone() for t in (q, k, v)]
    for t in changed:
        t[:, :, cut:] = torch.randn_like(t[:, :, cut:]) * 5
    out_changed = FAST_PATHS[path](*changed, rel, causal=True)
    torch.testing.assert_close(out_changed[:, :, :cut], out[:, :, :cut], atol=0, rtol=0)
    assert not torch.allclose(out_changed[:, :, cut:], out[:, :, cut:])


def test_distances_beyond_the_table_get_no_embedding():
    q, k, v, rel = (t.detach() for t in draw_inputs(1, 1, 8, 4, 3, True, False, torch.float64, seed=4))
    bigger = torch.cat([torch.randn(5, 4, dtype=torch.float64), rel])  # R = 8 with the same last 3 rows
    zero_padded = torch.cat([torch.zeros(5, 4, dtype=torch.float64), rel])
    torch.testing.assert_close(relative_attention(q, k, v, rel), relative_attention(q, k, v, zero_padded))
    assert not torch.allclose(relative_attention(q, k, v, rel), relative_attention(q, k, v, bigger))


def test_auto_dispatch_picks_the_chunked_path_on_cpu():
    args, kwargs = make_inputs(16)
    assert relative_attention.select("auto", *args, **kwargs).name == "torch"
    assert args[0].shape[2] == 16 and kwargs["causal"] is True
    torch.testing.assert_close(
        relative_attention(*args, **kwargs), naive.relative_attention_reference(*args, **kwargs)
    )


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda q, k, v, r: (q[0], k, v, r, True), "must be \\(batch, heads, length, depth\\)"),
        (lambda q, k, v, r: (q, k[:, :, :3], v, r, True), "same shape"),
        (lambda q, k, v, r: (q, k, v, r[..., :2], True), "rel_emb depth"),
        (lambda q, k, v, r: (q, k, v, r.expand(5, *r.shape), True), "per-head rel_emb needs 2 heads"),
        (lambda q, k, v, r: (q, k, v, r[:4], False), "odd"),
    ],
)
def test_bad_inputs_name_the_constraint(change, message):
    q, k, v, rel = (t.detach() for t in draw_inputs(1, 2, 5, 4, 5, True, False, torch.float64, seed=5))
    q, k, v, rel, causal = change(q, k, v, rel)
    with pytest.raises(ValueError, match=message):
        naive.relative_attention_reference(q, k, v, rel, causal=causal)
    with pytest.raises(BackendNotSupported, match=message):
        relative_attention(q, k, v, rel, causal=causal, backend="torch")


def test_block_size_must_be_positive():
    q, k, v, rel = (t.detach() for t in draw_inputs(1, 1, 4, 2, 2, True, False, torch.float32, seed=6))
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        relative_attention_chunked(q, k, v, rel, block_size=0)


triton = pytest.importorskip("triton", reason="Triton is a Linux dependency of attnzoo-kernels")


@settings(max_examples=12, deadline=None)
@given(
    batch=st.integers(1, 2),
    heads=st.sampled_from([1, 3]),
    length=st.sampled_from([1, 5, 16, 23]),
    depth=st.sampled_from([4, 16]),
    max_rel=st.integers(1, 30),
    causal=st.booleans(),
    per_head=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float16]),
    seed=st.integers(0, 2**16),
)
def test_triton_forward_matches_reference_in_the_interpreter(
    batch, heads, length, depth, max_rel, causal, per_head, dtype, seed
):
    from attnzoo_kernels.ops.relative import triton as triton_backend

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(
            triton_backend, "_new_buffer", lambda *size, **kw: torch.full(size, math.nan, **kw)
        )
        inputs = [
            t.detach()
            for t in draw_inputs(
                batch, heads, length, depth, max_rel, causal, per_head, dtype, seed, value_depth=depth + 3
            )
        ]
        out = triton_backend.relative_attention_triton(*inputs, causal=causal)
    expected = naive.relative_attention_reference(*(t.double() for t in inputs), causal=causal)
    tolerance = dict(atol=2e-5, rtol=2e-4) if dtype == torch.float32 else dict(atol=4e-3, rtol=4e-3)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), expected, **tolerance)


def test_triton_backend_is_dispatchable_in_the_interpreter_but_never_auto_on_cpu():
    args, kwargs = make_inputs(8)
    assert relative_attention.select("auto", *args, **kwargs).name == "torch"
    out = relative_attention(*args, backend="triton", **kwargs)
    torch.testing.assert_close(out, naive.relative_attention_reference(*args, **kwargs), atol=2e-5, rtol=2e-4)
    q, k, v, rel = (t.requires_grad_(True) for t in (t.clone() for t in args))
    with pytest.raises(BackendNotSupported, match="backward not supported"):
        relative_attention(q, k, v, rel, backend="triton", **kwargs)


@pytest.mark.parametrize("path", ["skew", "chunked-3"])
def test_pytorch_paths_run_under_torch_compile(path):
    inputs = draw_inputs(1, 2, 7, 4, 5, True, True, torch.float64, seed=9)
    expected = naive.relative_attention_reference(*inputs, causal=True)
    expected_grads = torch.autograd.grad(expected.sum(), inputs)
    compiled = torch.compile(FAST_PATHS[path], backend="aot_eager")
    out = compiled(*inputs, causal=True)
    torch.testing.assert_close(out, expected)
    for got, want in zip(torch.autograd.grad(out.sum(), inputs), expected_grads):
        torch.testing.assert_close(got, want)


def test_mixed_dtypes_name_the_constraint():
    q = torch.randn(1, 2, 8, 16)
    with pytest.raises(ValueError, match="must share one floating dtype"):
        relative_attention(q, q, q.double(), torch.randn(4, 16), causal=True)
