"""Bi-level routing attention, vectorised PyTorch: one gather per tensor and one fused attention call.

Where the official implementation cuts the map into regions, expands the key/value map to
every query region and runs ``torch.gather`` with an index as large as its output, this path
computes the token ids of the routed regions and copies those rows straight out of the
(possibly strided) key and value maps with ``index_select``: one row copy per gathered token,
no intermediate region layout. Queries are put in region order and the output back in
raster order the same way, and attention is one ``scaled_dot_product_attention`` over
``(batch * regions, heads, tokens, head_dim)``. When every region is routed
(``topk == n_win**2``, e.g. ``n_win == 1``) the gather is skipped: it is global attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .naive import check_routing_inputs

__all__ = ["routing_attention_vectorised", "routing_index"]


def _region_means(x: torch.Tensor, n_win: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, n_win**2, C): summing rows, then columns, is far faster than one strided mean."""
    batch, height, width, channels = x.shape
    rh, rw = height // n_win, width // n_win
    sums = x.reshape(batch, n_win, rh, width, channels).sum(2)
    sums = sums.view(batch, n_win, n_win, rw, channels).sum(3)
    return sums.reshape(batch, n_win * n_win, channels) / (rh * rw)


def routing_index(q: torch.Tensor, k: torch.Tensor, *, n_win: int, topk: int, scale: float) -> torch.Tensor:
    """The routed regions (batch, n_win**2, topk) of every query region, without gradient.

    The adjacency is scaled before the product as in the official code; only near-ties
    (within rounding) could route differently.
    """
    with torch.no_grad():
        q_region, k_region = _region_means(q, n_win), _region_means(k, n_win)
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
    # token ids of the map in region-major order: region r's tokens are region_tokens[r * tokens:(r + 1) * tokens]
    device = q.device
    rows = torch.arange(n_win, device=device).mul_(rh * width)
    cols = torch.arange(n_win, device=device).mul_(rw)
    region_start = (rows.view(-1, 1) + cols.view(1, -1)).reshape(regions)
    inner = (
        torch.arange(rh, device=device).mul_(width).view(-1, 1) + torch.arange(rw, device=device)
    ).reshape(-1)
    region_tokens = (region_start.view(-1, 1) + inner).reshape(-1)

    # keys/values of the routed regions, gathered token-wise straight from the (strided) maps: one copy each
    routed = region_start[index].unsqueeze(-1) + inner  # (B, R, topk, tokens)
    routed = routed + torch.arange(batch, device=device).mul_(height * width).view(batch, 1, 1, 1)
    routed = routed.reshape(-1)

    def gathered(x: torch.Tensor, d: int) -> torch.Tensor:
        picked = x.reshape(batch * height * width, num_heads * d).index_select(0, routed)
        return picked.view(batch * regions, topk * tokens, num_heads, d).transpose(1, 2)

    q_regions = q.reshape(batch, height * width, c_qk).index_select(1, region_tokens)
    q_regions = q_regions.view(batch * regions, tokens, num_heads, d_qk).transpose(1, 2)
    out = F.scaled_dot_product_attention(q_regions, gathered(k, d_qk), gathered(v, d_v), scale=scale)
    # (B * R, heads, tokens, d_v) in region-major token order -> raster order
    out = out.transpose(1, 2).reshape(batch, regions * tokens, c_v)
    return out.index_select(1, torch.argsort(region_tokens)).view(batch, height, width, c_v)
