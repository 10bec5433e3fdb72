"""Bi-level routing attention, vectorised PyTorch: one gather per tensor and one fused attention call.

Where the official implementation expands the key/value map to every query region and
runs ``torch.gather`` with an index as large as its output, this path cuts the keys
and values into regions once and copies whole routed regions with ``index_select``
(contiguous row copies), then runs ``scaled_dot_product_attention`` over
``(batch * regions, heads, tokens, head_dim)``. When every region is routed
(``topk == n_win**2``, e.g. ``n_win == 1``) the gather is skipped: it is global attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .naive import check_routing_inputs

__all__ = ["routing_attention_vectorised", "routing_index"]


def _to_regions(x: torch.Tensor, n_win: int) -> torch.Tensor:
    """(B, H, W, C) -> view (B, n_win, n_win, H/n_win, W/n_win, C)."""
    batch, height, width, channels = x.shape
    return x.view(batch, n_win, height // n_win, n_win, width // n_win, channels).transpose(2, 3)


def routing_index(q: torch.Tensor, k: torch.Tensor, *, n_win: int, topk: int, scale: float) -> torch.Tensor:
    """The routed regions (batch, n_win**2, topk) of every query region, without gradient.

    Region means and the scaled adjacency follow the official order of operations so that
    near-ties break the same way as in the released models.
    """
    with torch.no_grad():
        batch = q.shape[0]
        q_region = _to_regions(q, n_win).mean((3, 4)).reshape(batch, n_win * n_win, -1)
        k_region = _to_regions(k, n_win).mean((3, 4)).reshape(batch, n_win * n_win, -1)
        adjacency = (q_region * scale) @ k_region.transpose(-2, -1)
        return adjacency.topk(topk, dim=-1).indices


def routing_attention_vectorised(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    num_heads: int,
    n_win: int,
    topk: int,
    scale: float | None = None,
) -> torch.Tensor:
    """Bi-level routing attention on channels-last maps; see ``naive.routing_attention_reference``."""
    check_routing_inputs(q, k, v, num_heads=num_heads, n_win=n_win, topk=topk)
    batch, height, width, c_qk = q.shape
    c_v = v.shape[-1]
    d_qk, d_v = c_qk // num_heads, c_v // num_heads
    scale = d_qk**-0.5 if scale is None else scale
    regions = n_win * n_win
    rh, rw = height // n_win, width // n_win
    tokens = rh * rw

    if topk == regions:
        # every query region sees every token: plain global attention, region order is irrelevant
        def heads(x: torch.Tensor, d: int) -> torch.Tensor:
            return x.reshape(batch, height * width, num_heads, d).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q, d_qk), heads(k, d_qk), heads(v, d_v), scale=scale)
        return out.transpose(1, 2).reshape(batch, height, width, c_v)

    index = routing_index(q, k, n_win=n_win, topk=topk, scale=scale)
    # flat region ids into (batch * regions), so one index_select serves the whole batch
    offsets = torch.arange(batch, device=index.device).mul_(regions).view(batch, 1, 1)
    flat_index = (index + offsets).reshape(-1)

    def gathered(x: torch.Tensor, d: int) -> torch.Tensor:
        per_region = _to_regions(x, n_win).reshape(batch * regions, tokens * d * num_heads)
        picked = per_region.index_select(0, flat_index)  # (B * R * topk, tokens * C)
        return picked.view(batch * regions, topk * tokens, num_heads, d).transpose(1, 2)

    q_regions = _to_regions(q, n_win).reshape(batch * regions, tokens, num_heads, d_qk).transpose(1, 2)
    out = F.scaled_dot_product_attention(q_regions, gathered(k, d_qk), gathered(v, d_v), scale=scale)
    # (B * R, heads, tokens, d_v) -> (B, n_win, n_win, rh, rw, C) -> (B, H, W, C)
    out = out.transpose(1, 2).reshape(batch, n_win, n_win, rh, rw, c_v)
    return out.transpose(2, 3).reshape(batch, height, width, c_v)
