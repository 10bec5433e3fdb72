"""MoH gates: the fast path against the float64 reference (forward and backward), the gates' own
properties from the paper's equations, the load-balance loss, the router and input checks."""

from __future__ import annotations

import math

import pytest
import torch
from attnzoo_kernels.ops import all_ops
from attnzoo_kernels.ops.moh import (
    MoHRouter,
    load_balance_loss,
    load_balance_loss_reference,
    make_inputs,
    moh_gates,
    moh_route,
)
from hypothesis import given
from hypothesis import strategies as st
from kernel_checks import SETTINGS, TOLERANCES


def _logits(gen, leading, shared, routed, dtype, requires_grad=True):
    def draw(width):
        return (
            (torch.randn(*leading, width, generator=gen, dtype=torch.float64) * 2)
            .to(dtype)
            .requires_grad_(requires_grad)
        )

    routed_logits = draw(routed)
    shared_logits = draw(shared) if shared > 1 else None
    balance_logits = draw(2) if shared > 0 and routed > 0 else None
    return routed_logits, shared_logits, balance_logits


@st.composite
def head_counts(draw):
    shared = draw(st.integers(0, 4))
    routed = draw(st.integers(0 if shared else 1, 6))
    topk = draw(st.integers(1, routed)) if routed else 0
    return shared, routed, topk


@SETTINGS
@given(
    counts=head_counts(),
    leading=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    seed=st.integers(0, 2**16),
)
def test_fast_gates_match_the_reference_forward_and_backward(counts, leading, dtype, seed):
    shared, routed, topk = counts
    gen = torch.Generator().manual_seed(seed)
    routed_logits, shared_logits, balance_logits = _logits(gen, leading, shared, routed, dtype)
    kwargs = dict(topk=topk, shared_heads=shared, shared_logits=shared_logits, balance_logits=balance_logits)
    fast = moh_gates(routed_logits, backend="torch", **kwargs)
    reference = moh_gates(routed_logits, backend="reference", **kwargs)
    assert fast.shape == reference.shape == (*leading, shared + routed) and fast.dtype == dtype
    torch.testing.assert_close(fast, reference, **TOLERANCES[dtype])
    if not fast.requires_grad:  # a single shared head and nothing routed: the gate is the constant 1
        assert (shared, routed) == (1, 0) and not reference.requires_grad and (fast == 1).all()
        return
    leaves = [t for t in (routed_logits, shared_logits, balance_logits) if t is not None]
    upstream = torch.randn(fast.shape, generator=gen, dtype=torch.float64).to(dtype)
    fast_grads = torch.autograd.grad(fast, leaves, upstream, allow_unused=True)
    reference_grads = torch.autograd.grad(reference, leaves, upstream, allow_unused=True)
    for got, want in zip(fast_grads, reference_grads, strict=True):
        if want is None or got is None:  # only when no routed head exists (routed_logits unused)
            assert routed == 0
            continue
        torch.testing.assert_close(got, want, **TOLERANCES[dtype])


@SETTINGS
@given(counts=head_counts(), seed=st.integers(0, 2**16))
def test_gates_follow_the_equations(counts, seed):
    shared, routed, topk = counts
    gen = torch.Generator().manual_seed(seed)
    routed_logits, shared_logits, balance_logits = _logits(gen, (3, 7), shared, routed, torch.float64, False)
    gates, aux_loss, mask = moh_route(
        routed_logits,
        topk=topk,
        shared_heads=shared,
        shared_logits=shared_logits,
        balance_logits=balance_logits,
    )
    # shared heads are always on
    assert (gates[..., :shared] > 0).all()
    if routed == 0:
        assert aux_loss is None and mask is None
        torch.testing.assert_close(gates.sum(-1), torch.full((3, 7), float(shared), dtype=torch.float64))
        return
    # each token keeps exactly its k most probable routed heads, the others get 0
    probabilities = torch.softmax(routed_logits, dim=-1)
    assert (mask.sum(-1) == topk).all() and ((gates[..., shared:] > 0) == mask).all()
    kth = probabilities.topk(topk, dim=-1).values[..., -1:]
    assert (probabilities.masked_fill(~mask, math.inf) >= kth).all()
    # two-stage weighting: the shared group sums to 2 a1 S, the routed group to 2 a2 k, a1 + a2 = 1;
    # within the routed group the gates are the renormalised probabilities
    a = (
        torch.softmax(balance_logits, -1)
        if shared
        else torch.tensor([0.0, 0.5], dtype=torch.float64).expand(3, 7, 2)
    )
    torch.testing.assert_close(gates[..., :shared].sum(-1), 2 * a[..., 0] * shared)
    torch.testing.assert_close(gates[..., shared:].sum(-1), 2 * a[..., 1] * topk)
    renormalised = probabilities * mask / (probabilities * mask).sum(-1, keepdim=True)
    torch.testing.assert_close(gates[..., shared:] / gates[..., shared:].sum(-1, keepdim=True), renormalised)
    if shared > 1:
        torch.testing.assert_close(
            gates[..., :shared] / gates[..., :shared].sum(-1, keepdim=True), torch.softmax(shared_logits, -1)
        )
    torch.testing.assert_close(aux_loss, load_balance_loss_reference(probabilities, mask))


def test_uniform_logits_give_every_kept_head_gate_one():
    # the authors' scales keep a head's weight at 1 under uniform routing
    routed = torch.zeros(2, 3, 4)
    gates = moh_gates(
        routed, topk=4, shared_heads=2, shared_logits=torch.zeros(2, 3, 2), balance_logits=routed[..., :2]
    )
    torch.testing.assert_close(gates, torch.ones(2, 3, 6))
    torch.testing.assert_close(moh_gates(routed[..., :0], topk=0, shared_heads=3), torch.ones(2, 3, 3))


def test_load_balance_loss_on_a_known_routing_and_its_backends_agree():
    probabilities = torch.tensor([[0.75, 0.25], [0.25, 0.75], [0.75, 0.25], [0.75, 0.25]])
    mask = torch.tensor([[1, 0], [0, 1], [1, 0], [1, 0]], dtype=torch.bool)
    # mean p = (0.625, 0.375), routed fraction = (0.75, 0.25): mean(p f) E^2 = 0.28125 * 4
    assert float(load_balance_loss(probabilities, mask)) == pytest.approx(1.125)
    assert float(load_balance_loss_reference(probabilities, mask)) == pytest.approx(1.125)
    uniform = torch.full((6, 3), 1 / 3)
    assert float(load_balance_loss(uniform, torch.eye(3, dtype=torch.bool).repeat(2, 1))) == pytest.approx(
        1.0
    )
    gen = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(2, 5, 4, generator=gen, dtype=torch.float64), -1)
    m = torch.rand(2, 5, 4, generator=gen) > 0.5
    torch.testing.assert_close(load_balance_loss(p, m), load_balance_loss_reference(p, m))


def test_router_module_feeds_the_op():
    torch.manual_seed(0)
    router = MoHRouter(16, 6, 2, 2).double()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    out = router(x)
    expected = moh_gates(
        router.wg(x), topk=2, shared_heads=2, shared_logits=router.wg_1(x), balance_logits=router.wg_0(x)
    )
    torch.testing.assert_close(out.gates, expected)
    assert set(dict(router.named_parameters())) == {"wg.weight", "wg_0.weight", "wg_1.weight"}
    assert set(dict(MoHRouter(16, 6, 1, 2).named_parameters())) == {"wg.weight", "wg_0.weight"}
    assert set(dict(MoHRouter(16, 6, 0, 2).named_parameters())) == {"wg.weight"}
    assert MoHRouter(16, 1, 1, 0)(x.float()).gates.eq(1).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(topk=5, shared_heads=0), "topk=5 must lie in"),
        (dict(topk=0, shared_heads=2, balance_logits=torch.zeros(2, 3, 2)), "topk must be >= 1"),
        (dict(topk=1, shared_heads=2), "balance_logits must have shape"),
        (dict(topk=1, shared_heads=0, balance_logits=torch.zeros(2, 3, 2)), "only used when"),
        (
            dict(
                topk=1,
                shared_heads=2,
                shared_logits=torch.zeros(2, 3, 3),
                balance_logits=torch.zeros(2, 3, 2),
            ),
            "shared_logits must have shape",
        ),
    ],
)
def test_bad_inputs_name_the_constraint(kwargs, match):
    for backend in ("torch", "reference"):
        with pytest.raises(ValueError, match=match):
            moh_gates(torch.zeros(2, 3, 4), backend=backend, **kwargs)
    with pytest.raises(ValueError, match="at least one"):
        moh_gates(torch.zeros(2, 3, 0), topk=0, shared_heads=0)


def test_the_op_is_registered_with_inputs_for_the_benchmark():
    assert "moh_gates" in all_ops()
    args, kwargs = make_inputs(33, requires_grad=True)
    gates = moh_gates(*args, **kwargs)
    assert gates.shape == (1, 33, 8)
    assert moh_gates.select("auto", *args, **kwargs).name == "torch"
