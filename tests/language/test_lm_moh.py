"""MoH routing properties, the load-balance loss, and parity with the official MoH-ViT module."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from attnzoo_language.mixers.moh import (
    MoHRouter,
    MoHViTAttention,
    convert_official_moh_vit_attention,
    load_balance_loss,
)

PARITY = Path(__file__).parent / "data" / "moh_vit_attention_parity.npz"


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


CASES = {"s2r3": (2, 3), "s1r2": (1, 2), "s0r2": (0, 2), "s6r0": (6, 0)}


@pytest.mark.parametrize("case", CASES)
def test_moh_vit_attention_matches_the_official_module(case):
    data = np.load(PARITY)
    shared, routed = CASES[case]
    module = MoHViTAttention(48, (4, 4), num_heads=6, shared_head=shared, routed_head=routed)
    prefix = f"{case}/weight/"
    official = {k[len(prefix) :]: torch.from_numpy(data[k]) for k in data.files if k.startswith(prefix)}
    state = convert_official_moh_vit_attention(official)
    module.load_state_dict(state, strict=True)
    index = torch.from_numpy(data["relative_pos_index"])
    table = torch.from_numpy(data["relative_coords_table"])
    with torch.no_grad():
        out = module(torch.from_numpy(data[f"{case}/x"]), 4, 4, index, table)
    torch.testing.assert_close(out, torch.from_numpy(data[f"{case}/y"]), rtol=1e-5, atol=1e-5)
    if routed:
        assert float(module.last_aux_loss) == pytest.approx(float(data[f"{case}/aux_loss"]), rel=1e-5)
    else:
        assert module.last_aux_loss is None


def test_moh_vit_attention_checks_the_token_grid():
    module = MoHViTAttention(48, (4, 4), num_heads=6, shared_head=2, routed_head=2)
    with pytest.raises(ValueError, match="H \\* W"):
        module(torch.randn(1, 15, 48), 4, 4, torch.zeros(256, dtype=torch.long), torch.zeros(49, 2))
