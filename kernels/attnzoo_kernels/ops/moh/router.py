"""MoH's learned router as a module, shared by every MoH attention (language mixer, vision blocks).

Parameter names follow the authors' code: ``wg`` = ``W_r`` (routed heads), ``wg_0`` = ``W_h`` (the
two-way shared/routed balance, only when both groups exist), ``wg_1`` = ``W_s`` (only when there is
more than one shared head; a single shared head has gate 1 before balancing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from . import MoHGates


class MoHRouter(nn.Module):
    """Per-token head gates of MoH from token states ``x (..., dim)``; returns :class:`MoHGates`.

    ``num_heads`` heads in all: the first ``shared_heads`` are shared, each token keeps the top
    ``routed_heads`` of the other ``num_heads - shared_heads``.
    """

    def __init__(self, dim: int, num_heads: int, shared_heads: int, routed_heads: int):
        super().__init__()
        if not 0 <= shared_heads <= num_heads:
            raise ValueError(f"shared_heads={shared_heads} must lie in [0, num_heads={num_heads}]")
        if not 0 <= routed_heads <= num_heads - shared_heads:
            raise ValueError(
                f"routed_heads={routed_heads} (top-k) must lie in [0, num_heads - shared_heads = "
                f"{num_heads - shared_heads}]"
            )
        if routed_heads == 0 and shared_heads != num_heads:
            raise ValueError(
                f"with no routed heads every head is shared: shared_heads ({shared_heads}) must equal "
                f"num_heads ({num_heads})"
            )
        self.num_heads = num_heads
        self.shared_heads = shared_heads
        self.routed_heads = routed_heads
        if routed_heads > 0:
            self.wg = nn.Linear(dim, num_heads - shared_heads, bias=False)
            if shared_heads > 0:
                self.wg_0 = nn.Linear(dim, 2, bias=False)
        if shared_heads > 1:
            self.wg_1 = nn.Linear(dim, shared_heads, bias=False)

    def forward(self, x: torch.Tensor, backend: str = "auto") -> MoHGates:
        from . import moh_route

        if self.routed_heads > 0:
            routed_logits = self.wg(x)
        else:
            routed_logits = x.new_zeros(*x.shape[:-1], 0)
        return moh_route(
            routed_logits,
            topk=self.routed_heads,
            shared_heads=self.shared_heads,
            shared_logits=self.wg_1(x) if self.shared_heads > 1 else None,
            balance_logits=self.wg_0(x) if self.routed_heads > 0 and self.shared_heads > 0 else None,
            backend=backend,
        )
