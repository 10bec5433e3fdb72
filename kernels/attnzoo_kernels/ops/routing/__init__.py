"""Bi-level routing attention (BiFormer): region-level top-k routing, then token attention over the routed regions.

``routing_attention(q, k, v, *, num_heads, n_win, topk, scale=None, backend="auto")`` takes
channels-last maps ``(batch, height, width, channels)`` with heads packed head-major in the
channels, and returns ``(batch, height, width, v_channels)``. ``n_win`` must divide height
and width (pad beforehand otherwise). Backends: ``reference`` (float64 loops, ground truth)
and ``torch`` (vectorised: one ``index_select`` gather per tensor and fused SDPA).
"""

from __future__ import annotations

import math

import torch

from ...dispatch import Op
from .naive import check_routing_inputs, route_regions, routing_attention_reference
from .vectorised import routing_attention_vectorised, routing_index

__all__ = [
    "routing_attention",
    "routing_attention_reference",
    "routing_attention_vectorised",
    "routing_index",
    "route_regions",
    "check_routing_inputs",
    "make_inputs",
]

routing_attention = Op(
    "routing_attention",
    reference=routing_attention_reference,
    doc=__doc__ or "",
)
routing_attention.register(
    "torch",
    routing_attention_vectorised,
    priority=10,
    compile_note="plain PyTorch (topk, index_select, SDPA); traced by torch.compile",
)


def make_inputs(
    length: int,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    requires_grad: bool = False,
) -> tuple[tuple, dict]:
    """A BiFormer-S stage-2-like call with about ``length`` tokens: 64 channels, 2 heads, n_win=7, topk=4.

    The square map's side is ``length ** 0.5`` rounded to a multiple of ``n_win`` (at least 7).
    """
    n_win = 7
    side = max(n_win, n_win * round(math.sqrt(length) / n_win))
    q, k, v = (
        torch.randn(1, side, side, 64, device=device, dtype=dtype, requires_grad=requires_grad) for _ in range(3)
    )
    return (q, k, v), {"num_heads": 2, "n_win": n_win, "topk": 4, "scale": 64**-0.5}
