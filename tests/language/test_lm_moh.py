"""MoH routing properties and the load-balance loss (parity with the official MoH-ViT module: tests/vision)."""

from __future__ import annotations

import math

import pytest
import torch
from attnzoo_language.mixers.moh import MoHRouter, load_balance_loss


def random_router(num_heads=6, shared=2, routed=2, dim=16, seed=0):
    torch.manual_seed(seed)
    router = MoHRouter(dim, num_heads, shared, routed).double()
    for p in router.parameters():
        torch.nn.init.normal_(p, std=1.0)
    return router


@pytest.mark.parametrize("routed", [1, 2, 3])
def test_routed_gates_are_a_renormalised_top_k(routed):
    router = random_router(shared=0, routed=routed, num_heads=5)
    x = torch.randn(3, 7, 16, dtype=torch.float64)
    gates, _, mask = router(x)
    probabilities = torch.softmax(router.wg(x), dim=-1)
    assert (mask.sum(-1) == routed).all()
    assert ((gates > 0) == mask).all()
    # the kept heads are the k most probable ones
    kth = probabilities.topk(routed, dim=-1).values[..., -1:]
    assert (probabilities[mask] >= kth.expand_as(probabilities)[mask]).all()
    # renormalised to sum to 1 over the kept heads, then scaled by k as in the official code
    torch.testing.assert_close(gates.sum(-1), torch.full((3, 7), float(routed), dtype=torch.float64))
    torch.testing.assert_close(
        gates[mask] / routed, (probabilities * mask / (probabilities * mask).sum(-1, keepdim=True))[mask]
    )


def test_shared_heads_are_always_on_and_balanced_against_the_routed_group():
    router = random_router(num_heads=6, shared=2, routed=2)
    x = torch.randn(4, 9, 16, dtype=torch.float64)
    gates, _, mask = router(x)
    assert gates.shape == (4, 9, 6)
    assert (gates[..., :2] > 0).all()  # every token uses every shared head
    assert ((gates[..., 2:] > 0) == mask).all() and (mask.sum(-1) == 2).all()
    # shared gates sum to 2*a1*S, routed to 2*a2*k, with a1 + a2 = 1
    balance = torch.softmax(router.wg_0(x), -1)
    torch.testing.assert_close(gates[..., :2].sum(-1), 2 * balance[..., 0] * 2)
    torch.testing.assert_close(gates[..., 2:].sum(-1), 2 * balance[..., 1] * 2)


def test_a_single_shared_head_has_gate_one_before_balancing():
    router = random_router(num_heads=4, shared=1, routed=1)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    gates, _, _ = router(x)
    torch.testing.assert_close(gates[..., 0], 2 * torch.softmax(router.wg_0(x), -1)[..., 0])


def test_load_balance_loss_on_a_known_routing():
    # probabilities 3:1 toward expert 0 for tokens 0, 2, 3 and toward expert 1 for token 1
    probabilities = torch.tensor([[0.75, 0.25], [0.25, 0.75], [0.75, 0.25], [0.75, 0.25]])
    mask = torch.tensor([[1, 0], [0, 1], [1, 0], [1, 0]], dtype=torch.bool)
    # mean p = (0.625, 0.375), routed fraction = (0.75, 0.25): mean(p*f) * E^2 = 0.28125 * 4
    assert float(load_balance_loss(probabilities, mask)) == pytest.approx(1.125)
    uniform = torch.full((6, 3), 1 / 3)
    balanced = torch.eye(3, dtype=torch.bool).repeat(2, 1)
    assert float(load_balance_loss(uniform, balanced)) == pytest.approx(1.0)


def test_router_reports_the_loss_of_its_routing():
    router = MoHRouter(2, 2, 0, 1).double()
    with torch.no_grad():
        router.wg.weight.copy_(torch.eye(2, dtype=torch.float64))
    log3 = math.log(3)
    x = torch.tensor([[[log3, 0.0], [0.0, log3], [log3, 0.0], [log3, 0.0]]], dtype=torch.float64)
    with torch.no_grad():
        gates, aux, _ = router(x)
    assert float(aux) == pytest.approx(1.125)
    torch.testing.assert_close(gates[0, :, 0], torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64))


def test_router_rejects_impossible_head_counts():
    with pytest.raises(ValueError, match="top-k"):
        MoHRouter(8, 4, 2, 3)
    with pytest.raises(ValueError, match="every head is shared"):
        MoHRouter(8, 4, 2, 0)
