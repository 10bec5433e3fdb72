"""Float64 reference of MoH's head gates and load-balance loss, written from the paper's equations.

MoH (Jin et al., arXiv 2410.11842) treats attention heads as experts. With ``S`` shared heads and
``E`` routed heads, of which each token keeps the top ``k`` (Eq. 5-6 and the authors' code,
SkyworkAI/MoH ``MoH-ViT/attention.py``)::

    g_shared = 2 a_1 · S · softmax(W_s x)                 (softmax of one logit is 1 when S = 1)
    g_routed = 2 a_2 · k · renorm(topk(softmax(W_r x)))   (renormalised to sum to 1 over the kept k)
    [a_1, a_2] = softmax(W_h x)

The factors ``S``, ``k`` and ``2`` are the authors' code's: a head's weight stays near 1 when the
routing is uniform. Without shared heads the gates are ``k · renorm(...)``; without routed heads
``S · softmax(W_s x)``. The load-balance loss over the ``E`` routed heads is ``E² · mean_e(P_e f_e)``
with ``P_e`` the mean routing probability and ``f_e`` the fraction of tokens that keep head ``e``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_moh_inputs(
    routed_logits: Tensor,
    *,
    topk: int,
    shared_heads: int,
    shared_logits: Tensor | None,
    balance_logits: Tensor | None,
) -> None:
    """Raise ``ValueError`` naming the constraint when the logits and head counts disagree."""
    if routed_logits.dim() < 1 or not routed_logits.is_floating_point():
        raise ValueError(
            f"moh_gates: routed_logits must be a floating (..., routed_heads) tensor; got "
            f"{routed_logits.dtype} of shape {tuple(routed_logits.shape)}"
        )
    routed_heads = routed_logits.shape[-1]
    leading = routed_logits.shape[:-1]
    if shared_heads < 0:
        raise ValueError(f"moh_gates: shared_heads must be >= 0; got {shared_heads}")
    if not 0 <= topk <= routed_heads:
        raise ValueError(f"moh_gates: topk={topk} must lie in [0, routed heads = {routed_heads}]")
    if topk == 0 and routed_heads > 0:
        raise ValueError(f"moh_gates: topk must be >= 1 when there are routed heads ({routed_heads})")
    if shared_heads + routed_heads == 0:
        raise ValueError("moh_gates: there must be at least one shared or routed head")
    if shared_logits is not None and (
        shared_logits.shape[:-1] != leading or shared_logits.shape[-1] != shared_heads
    ):
        raise ValueError(
            f"moh_gates: shared_logits must have shape {(*leading, shared_heads)} (..., shared_heads); "
            f"got {tuple(shared_logits.shape)}"
        )
    needs_balance = shared_heads > 0 and routed_heads > 0
    if needs_balance and (balance_logits is None or balance_logits.shape != (*leading, 2)):
        got = None if balance_logits is None else tuple(balance_logits.shape)
        raise ValueError(
            f"moh_gates: with shared and routed heads, balance_logits must have shape {(*leading, 2)}; got {got}"
        )
    if not needs_balance and balance_logits is not None:
        raise ValueError(
            "moh_gates: balance_logits are only used when there are both shared and routed heads"
        )


def load_balance_loss_reference(probabilities: Tensor, mask: Tensor) -> Tensor:
    """``E² · mean_e(P_e f_e)`` for routing ``probabilities`` and top-k ``mask``, both ``(..., E)``.

    ``P_e`` is the mean probability and ``f_e`` the fraction of tokens routed to expert ``e``, both
    over every leading position; the loss is 1 when both are uniform and ``k = 1``.
    """
    num_experts = probabilities.shape[-1]
    p = probabilities.reshape(-1, num_experts).to(torch.float64)
    f = mask.reshape(-1, num_experts).to(torch.float64)
    loss = (p.mean(dim=0) * f.mean(dim=0)).mean() * num_experts**2
    return loss.to(probabilities.dtype)


def moh_gates_reference(
    routed_logits: Tensor,
    *,
    topk: int,
    shared_heads: int = 0,
    shared_logits: Tensor | None = None,
    balance_logits: Tensor | None = None,
) -> Tensor:
    """MoH's per-token head gates ``(..., S + E)`` (shared heads first), computed in float64 from the equations (see the module docstring).

    ``routed_logits (..., E)`` are ``W_r x``; ``shared_logits (..., S)`` are ``W_s x`` (None: equal
    logits, so every shared gate is 1 before balancing); ``balance_logits (..., 2)`` are ``W_h x``,
    required when both groups exist. Returns the gates in the dtype of ``routed_logits``.
    """
    check_moh_inputs(
        routed_logits,
        topk=topk,
        shared_heads=shared_heads,
        shared_logits=shared_logits,
        balance_logits=balance_logits,
    )
    dtype = routed_logits.dtype
    routed_heads = routed_logits.shape[-1]
    leading = routed_logits.shape[:-1]
    logits = routed_logits.to(torch.float64)

    if shared_logits is None:
        shared = torch.ones(*leading, shared_heads, dtype=torch.float64, device=logits.device)
    else:
        shared = torch.softmax(shared_logits.to(torch.float64), dim=-1) * shared_heads
    if routed_heads == 0:
        return shared.to(dtype)

    probabilities = torch.softmax(logits, dim=-1)
    order = torch.argsort(probabilities, dim=-1, descending=True, stable=True)
    mask = torch.zeros_like(probabilities, dtype=torch.bool).scatter(-1, order[..., :topk], True)
    kept = probabilities * mask
    routed = kept / kept.sum(dim=-1, keepdim=True) * topk
    if shared_heads == 0:
        return routed.to(dtype)
    balance = torch.softmax(balance_logits.to(torch.float64), dim=-1) * 2
    gates = torch.cat([shared * balance[..., :1], routed * balance[..., 1:]], dim=-1)
    return gates.to(dtype)
