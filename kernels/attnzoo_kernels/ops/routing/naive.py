"""Bi-level routing attention (BiFormer, arXiv 2303.08810, Sec. 3.2), written from the paper's equations.

The feature map is cut into ``n_win x n_win`` non-overlapping regions. Region-level
queries and keys are the per-region means of the token queries and keys (Eq. 2); their
product is the region adjacency ``A^r = Q^r (K^r)^T`` (Eq. 3), and the routing index
``I^r = topk(A^r)`` keeps, for every query region, the ``topk`` most related regions.
The keys and values of the routed regions are gathered (Eq. 4) and each token of the
query region attends to them with ordinary multi-head softmax attention (Eq. 5).

This reference loops over batch, regions and heads in float64 and is the ground truth
the fast backends are tested against. It is slow on purpose.
"""

from __future__ import annotations

import torch

__all__ = ["routing_attention_reference", "route_regions", "check_routing_inputs"]


def check_routing_inputs(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, num_heads: int, n_win: int, topk: int
) -> None:
    """Raise ValueError naming the constraint that ``q``, ``k``, ``v`` and the options break."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            "routing attention takes channels-last maps (batch, height, width, channels); got q, k, v of "
            f"shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape != k.shape:
        raise ValueError(f"q and k must have the same shape; got {tuple(q.shape)} and {tuple(k.shape)}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"v must share batch, height and width with q; got {tuple(v.shape)} and {tuple(q.shape)}"
        )
    if num_heads < 1 or q.shape[-1] % num_heads or v.shape[-1] % num_heads:
        raise ValueError(
            f"num_heads={num_heads} must divide the query/key channels ({q.shape[-1]}) "
            f"and the value channels ({v.shape[-1]})"
        )
    height, width = q.shape[1], q.shape[2]
    if n_win < 1 or height % n_win or width % n_win:
        raise ValueError(
            f"feature map {height}x{width} is not divisible by n_win={n_win}; pad it to a multiple of "
            f"n_win first (BiFormer's auto_pad=True does this)"
        )
    if not 1 <= topk <= n_win * n_win:
        raise ValueError(f"topk={topk} must lie in [1, n_win**2 = {n_win * n_win}]")


def _region_tokens(x: torch.Tensor, n_win: int) -> torch.Tensor:
    """(H, W, C) -> (n_win**2, tokens per region, C); regions row-major, tokens row-major inside."""
    height, width, channels = x.shape
    rh, rw = height // n_win, width // n_win
    regions = []
    for j in range(n_win):
        for i in range(n_win):
            regions.append(x[j * rh : (j + 1) * rh, i * rw : (i + 1) * rw].reshape(rh * rw, channels))
    return torch.stack(regions)


def route_regions(
    q: torch.Tensor, k: torch.Tensor, *, n_win: int, topk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Region adjacency ``A^r`` (batch, regions, regions) and routing index ``I^r`` (batch, regions, topk)."""
    adjacency = []
    for b in range(q.shape[0]):
        q_region = _region_tokens(q[b], n_win).mean(1)  # Eq. 2: region-level queries
        k_region = _region_tokens(k[b], n_win).mean(1)
        adjacency.append(q_region @ k_region.T)  # Eq. 3
    adjacency = torch.stack(adjacency)
    return adjacency, adjacency.topk(topk, dim=-1).indices


def routing_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    num_heads: int,
    n_win: int,
    topk: int,
    scale: float | None = None,
) -> torch.Tensor:
    """Bi-level routing attention, computed in float64 and returned in ``q``'s dtype.

    Args:
        q, k: (batch, height, width, qk_channels), heads packed head-major in the channels.
        v: (batch, height, width, v_channels).
        num_heads: attention heads; divides both channel counts.
        n_win: regions per side; divides height and width.
        topk: routed regions per query region, in ``[1, n_win**2]``.
        scale: softmax temperature; ``head_dim ** -0.5`` when None.

    Returns:
        (batch, height, width, v_channels): every token's attention over the tokens of its
        region's ``topk`` routed regions. Routing is a hard, non-differentiable choice.
    """
    check_routing_inputs(q, k, v, num_heads=num_heads, n_win=n_win, topk=topk)
    out_dtype = q.dtype
    q, k, v = q.double(), k.double(), v.double()
    batch, height, width, _ = q.shape
    d_qk, d_v = q.shape[-1] // num_heads, v.shape[-1] // num_heads
    scale = d_qk**-0.5 if scale is None else scale
    rh, rw = height // n_win, width // n_win

    _, index = route_regions(q.detach(), k.detach(), n_win=n_win, topk=topk)
    rows = []
    for b in range(batch):
        q_regions = _region_tokens(q[b], n_win)
        k_regions = _region_tokens(k[b], n_win)
        v_regions = _region_tokens(v[b], n_win)
        outputs = []
        for r in range(n_win * n_win):
            k_gathered = torch.cat([k_regions[s] for s in index[b, r].tolist()])  # Eq. 4
            v_gathered = torch.cat([v_regions[s] for s in index[b, r].tolist()])
            heads = []
            for m in range(num_heads):
                qh = q_regions[r][:, m * d_qk : (m + 1) * d_qk]
                kh = k_gathered[:, m * d_qk : (m + 1) * d_qk]
                vh = v_gathered[:, m * d_v : (m + 1) * d_v]
                heads.append(torch.softmax(qh @ kh.T * scale, dim=-1) @ vh)  # Eq. 5
            outputs.append(torch.cat(heads, dim=-1))
        # regions back onto the map: (n_win, n_win, rh, rw, C) -> (H, W, C)
        region_out = torch.stack(outputs).reshape(n_win, n_win, rh, rw, -1)
        rows.append(region_out.permute(0, 2, 1, 3, 4).reshape(height, width, -1))
    return torch.stack(rows).to(out_dtype)
