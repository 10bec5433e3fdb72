"""The Causal Grassmann layer of "Attention Is Not What You Need" (arXiv 2512.19428).

Each token state is reduced to ``z_t = W_red h_t + b_red`` in ``R^r``. For every offset ``delta``
of a window set, the pair ``(z_t, z_{t-delta})`` spans a 2-plane, a point of the Grassmannian
``Gr(2, r)``, encoded by its Plücker coordinates

    p_ij = z_{t,i} z_{t-delta,j} - z_{t,j} z_{t-delta,i},   i < j,

``r (r - 1) / 2`` numbers, normalised to unit length (``p / max(||p||, eps)``). Each is projected
back to the model width (``g^delta = W_plu p + b_plu``, one projection shared by all offsets),
the projections are averaged over the offsets that reach a real token (``t - delta >= 0``), and a
gate blends the geometry into the state:

    alpha = sigmoid(W_gate [h_t; g_t] + b_gate),   out = LayerNorm(alpha * h_t + (1 - alpha) * g_t).

Only the last ``max(delta)`` reduced states matter for the next token, so decoding keeps ``z`` in
the cache instead of keys and values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import MixerContext, TokenMixer, register_mixer

__all__ = ["plucker_coordinates", "CausalGrassmannMixer"]


def plucker_coordinates(
    u: torch.Tensor, v: torch.Tensor, eps: float = 1e-8, normalize: bool = True
) -> torch.Tensor:
    """Plücker coordinates of the planes spanned by ``u`` and ``v`` (``(..., r)`` each), ``(..., r(r-1)/2)``.

    Coordinate ``(i, j)``, ``i < j``, in row-major upper-triangle order, is ``u_i v_j - u_j v_i``.
    With ``normalize`` the vector is divided by ``max(||p||, eps)``.
    """
    if u.shape != v.shape:
        raise ValueError(f"u and v must have the same shape, got {tuple(u.shape)} and {tuple(v.shape)}")
    r = u.shape[-1]
    if r < 2:
        raise ValueError(f"Plücker coordinates need vectors of dimension >= 2, got {r}")
    i, j = torch.triu_indices(r, r, offset=1, device=u.device)
    p = u[..., i] * v[..., j] - u[..., j] * v[..., i]
    if normalize:
        p = p / p.norm(dim=-1, keepdim=True).clamp(min=eps)
    return p


@register_mixer("grassmann")
class CausalGrassmannMixer(TokenMixer):
    """Causal Grassmann mixing over the offsets ``config.grassmann_windows`` with ``r = grassmann_reduced_dim``."""

    def __init__(self, config, layer_idx: int = 0):
        super().__init__()
        width, r = config.hidden_size, config.grassmann_reduced_dim
        self.windows = tuple(int(w) for w in config.grassmann_windows)
        self.reduced_dim = r
        self.eps = 1e-8
        self.W_red = nn.Linear(width, r)
        self.W_plu = nn.Linear(r * (r - 1) // 2, width)
        self.W_gate = nn.Linear(2 * width, width)
        self.norm = nn.LayerNorm(width)

    def geometry(self, z_all: torch.Tensor, start: int) -> torch.Tensor:
        """The averaged projected Plücker features ``g_t`` for positions ``start..`` of ``z_all (B, T, r)``.

        Computed without materialising one Plücker vector per offset: ``W_plu`` is linear and the
        wedge product is bilinear, so ``sum_delta p(z_t, z_{t-delta}) / ||p_delta|| = p(z_t, w_t)`` with
        ``w_t = sum_delta z_{t-delta} / ||p_delta||`` over the offsets that reach a token, and
        ``||p(u, v)||^2 = |u|^2 |v|^2 - (u.v)^2`` (Lagrange's identity). Then
        ``g_t = (W_plu p(z_t, w_t) + n_t b_plu) / n_t`` with ``n_t`` the number of such offsets
        (``g_t = 0`` where there is none, e.g. ``t = 0``). :meth:`geometry_reference` is the literal form.
        """
        total = z_all.shape[1]
        positions = torch.arange(start, total, device=z_all.device)
        z_now = z_all[:, start:]
        now_sq = z_now.square().sum(-1, keepdim=True)
        weighted_past = torch.zeros_like(z_now)
        count = z_all.new_zeros(1, total - start, 1)
        for delta in self.windows:
            past = positions - delta
            valid = (past >= 0).to(z_all.dtype)[None, :, None]
            if not bool(valid.any()):
                continue
            z_past = z_all[:, past.clamp(min=0)]
            wedge_sq = (
                now_sq * z_past.square().sum(-1, keepdim=True)
                - (z_now * z_past).sum(-1, keepdim=True).square()
            )
            norm = wedge_sq.clamp(min=self.eps**2).sqrt()
            weighted_past = weighted_past + z_past * (valid / norm)
            count = count + valid
        summed = plucker_coordinates(z_now, weighted_past, normalize=False)
        projected = F.linear(summed, self.W_plu.weight) + count * self.W_plu.bias
        return projected / count.clamp(min=1)

    def geometry_reference(self, z_all: torch.Tensor, start: int) -> torch.Tensor:
        """:meth:`geometry` computed window by window from :func:`plucker_coordinates` (the paper's order)."""
        batch, total, _ = z_all.shape
        positions = torch.arange(start, total, device=z_all.device)
        accum = z_all.new_zeros(batch, total - start, self.W_plu.out_features)
        count = z_all.new_zeros(1, total - start, 1)
        for delta in self.windows:
            past = positions - delta
            valid = (past >= 0).to(z_all.dtype)[None, :, None]
            p = plucker_coordinates(z_all[:, start:], z_all[:, past.clamp(min=0)], eps=self.eps)
            accum = accum + self.W_plu(p) * valid
            count = count + valid
        return accum / count.clamp(min=1)

    def forward(self, hidden_states: torch.Tensor, ctx: MixerContext) -> tuple[torch.Tensor, None]:
        z = self.W_red(hidden_states)
        z_all = z
        if ctx.cache is not None:
            # Keys and values of this layer's cache slot are both the reduced states (one head).
            z_all, _ = ctx.cache.update(z.unsqueeze(1), z.unsqueeze(1), self.layer_idx)
            z_all = z_all.squeeze(1)
        g = self.geometry(z_all, z_all.shape[1] - z.shape[1])
        alpha = torch.sigmoid(self.W_gate(torch.cat([hidden_states, g], dim=-1)))
        return self.norm(alpha * hidden_states + (1 - alpha) * g), None
