"""Bi-level routing attention (BiFormer): region-level top-k routing, then token attention over the routed regions.

``routing_attention(q, k, v, *, num_heads, n_win, topk, scale=None, backend="auto")`` takes
channels-last maps ``(batch, height, width, channels)`` with heads packed head-major in the
channels, and returns ``(batch, height, width, v_channels)``. ``n_win`` must divide height
and width (pad beforehand otherwise). Backends: ``reference`` (float64 loops, ground truth)
``torch`` (vectorised: one ``index_select`` gather per tensor and fused SDPA) and ``triton``
(one fused forward-only kernel, no gather in memory; opt-in until benchmarked on a GPU).
"""

from __future__ import annotations

import math

import torch

from ...dispatch import Op, triton_available, triton_devices
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
    devices=("cpu", "cuda", "mps", "meta"),  # meta: shape inference for full-size models without memory
    compile_note="plain PyTorch (topk, index_select, SDPA); traced by torch.compile",
)


def _triton_backend(*args, **kwargs):
    # imported on first use, so that TRITON_INTERPRET set by a CPU test applies to the kernel's jit
    from .triton import routing_attention_triton

    return routing_attention_triton(*args, **kwargs)


routing_attention.register(
    "triton",
    _triton_backend,
    priority=5,  # below the PyTorch path until it has been measured on a GPU
    available=triton_available,
    devices=triton_devices(),
    dtypes=(torch.float16, torch.float32),
    supports_grad=False,
    interpreted_on_cpu=True,
    compile_note="Triton kernel; forward only",
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
        torch.randn(1, side, side, 64, device=device, dtype=dtype, requires_grad=requires_grad)
        for _ in range(3)
    )
    return (q, k, v), {"num_heads": 2, "n_win": n_win, "topk": 4, "scale": 64**-0.5}
