"""MoH (Mixture-of-Head attention, arXiv 2410.11842): per-token head gates and the load-balance loss.

* ``moh_gates(routed_logits, *, topk, shared_heads=0, shared_logits=None, balance_logits=None,
  backend="auto") -> gates (..., shared_heads + E)`` — the op. The gates weight the head outputs of
  an attention layer (shared heads first) in place of a plain sum: ``out = sum_h gates[..., h] head_h``.
* ``moh_route(...) -> MoHGates(gates, aux_loss, routed_mask)`` — the op plus the top-k mask and the
  load-balance loss, what an attention layer needs in training.
* ``load_balance_loss(probabilities, mask)`` — the auxiliary loss on its own.
* ``MoHRouter`` — the learned router module (``wg``, ``wg_0``, ``wg_1`` as in the authors' code).

Backends of ``moh_gates``: ``torch`` (top-k on the logits and a k-wide softmax, input dtype) and
``reference`` (float64, full softmax, top-k mask and renormalisation, as the equations read).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ...dispatch import Op
from .fused import load_balance_loss, moh_gates_torch
from .naive import load_balance_loss_reference, moh_gates_reference

__all__ = [
    "MoHGates",
    "MoHRouter",
    "load_balance_loss",
    "load_balance_loss_reference",
    "make_inputs",
    "moh_gates",
    "moh_gates_reference",
    "moh_route",
]

moh_gates = Op(
    "moh_gates",
    reference=moh_gates_reference,
    doc="MoH head gates: 2a1·S·softmax(W_s x) for shared heads, 2a2·k·renorm(topk(softmax(W_r x))) routed.",
)
moh_gates.register("torch", moh_gates_torch, priority=10)


class MoHGates(NamedTuple):
    """``gates (..., S + E)`` (shared heads first), the load-balance loss (None when ``E = 0``) and the
    boolean top-k mask over the routed heads ``(..., E)`` (None when ``E = 0``)."""

    gates: Tensor
    aux_loss: Tensor | None
    routed_mask: Tensor | None


def moh_route(
    routed_logits: Tensor,
    *,
    topk: int,
    shared_heads: int = 0,
    shared_logits: Tensor | None = None,
    balance_logits: Tensor | None = None,
    backend: str = "auto",
) -> MoHGates:
    """:func:`moh_gates` with the routed heads' top-k mask and the load-balance loss over all tokens."""
    gates = moh_gates(
        routed_logits,
        topk=topk,
        shared_heads=shared_heads,
        shared_logits=shared_logits,
        balance_logits=balance_logits,
        backend=backend,
    )
    if routed_logits.shape[-1] == 0:
        return MoHGates(gates, None, None)
    kept = torch.topk(routed_logits, topk, dim=-1).indices
    mask = torch.zeros_like(routed_logits, dtype=torch.bool).scatter(-1, kept, True)
    aux_loss = load_balance_loss(torch.softmax(routed_logits, dim=-1), mask)
    return MoHGates(gates, aux_loss, mask)


from .router import MoHRouter  # noqa: E402  (the router calls moh_route)


def make_inputs(
    length: int,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    requires_grad: bool = False,
) -> tuple[tuple, dict]:
    """Router logits of one sequence at ``length`` tokens, 8 heads: 2 shared, top-2 of 6 routed."""
    gen = torch.Generator().manual_seed(length)
    routed = torch.randn(1, length, 6, generator=gen, dtype=dtype).to(device)
    shared = torch.randn(1, length, 2, generator=gen, dtype=dtype).to(device)
    balance = torch.randn(1, length, 2, generator=gen, dtype=dtype).to(device)
    for t in (routed, shared, balance):
        t.requires_grad_(requires_grad)
    return (routed,), {"topk": 2, "shared_heads": 2, "shared_logits": shared, "balance_logits": balance}
