"""MoH's head gates in the input dtype, without the full renormalisation.

The top-k of ``softmax(l)`` are the top-k of the logits ``l``, and ``p_i / sum_{j in topk} p_j`` is
``softmax`` over the kept logits alone, so the routed gates are one ``topk`` on the logits, a
``k``-wide softmax and a scatter: no full softmax, no division by the kept mass.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .naive import check_moh_inputs


def load_balance_loss(probabilities: Tensor, mask: Tensor) -> Tensor:
    """MoH's load-balance loss ``E² · mean_e(P_e f_e)`` for routing ``probabilities`` and top-k ``mask``,
    both ``(..., E)``, in the dtype of ``probabilities``: ``P_e`` is the mean probability and ``f_e``
    the fraction of tokens routed to expert ``e``; 1 when both are uniform and ``k = 1``."""
    num_experts = probabilities.shape[-1]
    p = probabilities.reshape(-1, num_experts).mean(dim=0)
    f = mask.reshape(-1, num_experts).to(probabilities.dtype).mean(dim=0)
    return torch.mean(p * f) * (num_experts * num_experts)


def moh_gates_torch(
    routed_logits: Tensor,
    *,
    topk: int,
    shared_heads: int = 0,
    shared_logits: Tensor | None = None,
    balance_logits: Tensor | None = None,
) -> Tensor:
    """Same contract as :func:`moh_gates_reference`, computed with a top-k softmax in the input dtype."""
    check_moh_inputs(
        routed_logits,
        topk=topk,
        shared_heads=shared_heads,
        shared_logits=shared_logits,
        balance_logits=balance_logits,
    )
    routed_heads = routed_logits.shape[-1]
    if shared_logits is None:
        shared = routed_logits.new_ones(*routed_logits.shape[:-1], shared_heads)
    else:
        shared = torch.softmax(shared_logits, dim=-1) * shared_heads
    if routed_heads == 0:
        return shared

    kept_logits, kept = torch.topk(routed_logits, topk, dim=-1)
    routed = torch.zeros_like(routed_logits).scatter(-1, kept, torch.softmax(kept_logits, dim=-1) * topk)
    if shared_heads == 0:
        return routed
    balance = torch.softmax(balance_logits, dim=-1) * 2
    return torch.cat([shared * balance[..., :1], routed * balance[..., 1:]], dim=-1)
