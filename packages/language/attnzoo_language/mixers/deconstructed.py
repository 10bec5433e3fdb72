"""The controlled attention variants of "Deconstructing Attention" (Xue et al., arXiv 2510.11602).

Each relaxes one design principle of standard attention (section 3 of the paper):

* ``mlp`` -- no token mixing: a gated MLP ``FC_dn(SiLU(FC_gt h) * FC_up h)`` whose width matches
  the ``4 d^2`` parameters of attention; token ``t``'s output depends on token ``t`` only.
* ``taylor`` -- mathematical form, approximate: similarity weighting kept, softmax replaced by its
  second-order Taylor expansion ``1 + x + x^2 / 2`` of ``x = q.k / sqrt(d_h)``, normalised over the
  causal window (Eq. 6, the Based kernel of Arora et al. 2024), computed here in the exact quadratic
  form. (The paper's Appendix I sums three separately normalised terms instead; see the docs page.)
* ``elementwise`` -- mathematical form, non-approximate: no pairwise similarity; each key position
  gets a score from its own element-wise product ``s_j = sum(SiLU(q_j) * k_j) / sqrt(d_h)`` and
  ``A_ij = softmax_{j <= i}(s_j)`` (Eq. 7-8).
* ``rndembqk`` -- sequence dependency: queries and keys come from fixed random embeddings
  ``eps ~ N(0, sigma^2)`` indexed by position, identical for every input; values from the state.
* ``staticembqk`` -- current Q/K: queries and keys come from the static input embeddings of the
  sequence instead of the current layer's hidden state (Eq. 13); values from the state.

All but ``mlp`` keep the parameter count of standard attention (``W_Q, W_K, W_V, W_O``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .registry import MixerContext, TokenMixer, register_mixer
from .softmax import merge_heads, softmax_attention_call, split_heads

__all__ = [
    "GatedMLPMixer",
    "TaylorAttention",
    "ElementwiseAttention",
    "RndEmbQKAttention",
    "StaticEmbQKAttention",
    "fixed_random_embeddings",
]


def _track_length(ctx: MixerContext, hidden_states: torch.Tensor, layer_idx: int) -> None:
    # A mixer without state still advances its cache slot (by zero-width entries) so that the
    # cache's sequence length is right whichever layer transformers asks.
    if ctx.cache is not None:
        empty = hidden_states.new_zeros(hidden_states.shape[0], 1, hidden_states.shape[1], 0)
        ctx.cache.update(empty, empty, layer_idx)


@register_mixer("mlp")
class GatedMLPMixer(TokenMixer):
    """No token mixing: ``FC_dn(SiLU(FC_gt h) * FC_up h)`` with hidden width ``round(4 d / 3)``."""

    def __init__(self, config, layer_idx: int = 0):
        super().__init__()
        width = config.hidden_size
        hidden = round(4 * width / 3)
        self.gate_proj = nn.Linear(width, hidden, bias=False)
        self.up_proj = nn.Linear(width, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, width, bias=False)

    def forward(self, hidden_states: torch.Tensor, ctx: MixerContext) -> tuple[torch.Tensor, None]:
        _track_length(ctx, hidden_states, self.layer_idx)
        return self.down_proj(F.silu(self.gate_proj(hidden_states)) * self.up_proj(hidden_states)), None


class _QKVAttention(TokenMixer):
    """Shared projections of the attention-shaped variants."""

    def __init__(self, config, layer_idx: int = 0):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        width = config.hidden_size
        self.q_proj = nn.Linear(width, width, bias=False)
        self.k_proj = nn.Linear(width, width, bias=False)
        self.v_proj = nn.Linear(width, width, bias=False)
        self.o_proj = nn.Linear(width, width, bias=False)

    def _cached(
        self, k: torch.Tensor, v: torch.Tensor, ctx: MixerContext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if ctx.cache is not None:
            return ctx.cache.update(k, v, self.layer_idx)
        return k, v


def taylor_softmax_weights(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Attention weights ``f(x) / sum f(x)`` with ``f(x) = 1 + x + x^2/2`` (> 0 for every x) over ``keep``."""
    weights = (1 + scores + 0.5 * scores.square()) * keep
    return weights / weights.sum(dim=-1, keepdim=True)


@register_mixer("taylor")
class TaylorAttention(_QKVAttention):
    """Approximate form: the second-order Taylor expansion of ``exp`` in place of softmax's."""

    def forward(self, hidden_states: torch.Tensor, ctx: MixerContext) -> tuple[torch.Tensor, None]:
        q = split_heads(self.q_proj(hidden_states), self.num_heads)
        k = split_heads(self.k_proj(hidden_states), self.num_heads)
        v = split_heads(self.v_proj(hidden_states), self.num_heads)
        k, v = self._cached(k, v, ctx)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        keep = ctx.keep_mask(q.shape[-2], k.shape[-2], q.device)
        out = taylor_softmax_weights(scores, keep.to(scores.dtype)) @ v
        return self.o_proj(merge_heads(out)), None


@register_mixer("elementwise")
class ElementwiseAttention(_QKVAttention):
    """Non-approximate form: ``A_ij = softmax_{j<=i}(sum(SiLU(q_j) * k_j) / sqrt(d_h))``.

    The weights of query ``i`` depend only on the keys' own scores, so the op is softmax attention
    with a constant query: it runs through the kernels' softmax op with ``q = 1`` and ``k = s``.
    """

    def forward(self, hidden_states: torch.Tensor, ctx: MixerContext) -> tuple[torch.Tensor, None]:
        q = F.silu(split_heads(self.q_proj(hidden_states), self.num_heads))
        k = split_heads(self.k_proj(hidden_states), self.num_heads)
        v = split_heads(self.v_proj(hidden_states), self.num_heads)
        score = (q * k).sum(dim=-1, keepdim=True) / math.sqrt(self.head_dim)
        score, v = self._cached(score, v, ctx)
        ones = torch.ones_like(q[..., :1])
        out = softmax_attention_call(ones, score, v, ctx, scale=1.0)
        return self.o_proj(merge_heads(out)), None


def fixed_random_embeddings(length: int, width: int, seed: int, std: float) -> torch.Tensor:
    """The fixed ``(length, width)`` random embeddings ``eps ~ N(0, std^2)`` of ``rndembqk``, on CPU."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(length, width, generator=generator, device="cpu") * std


@register_mixer("rndembqk")
class RndEmbQKAttention(_QKVAttention):
    """Sequence-independent weights: ``Q, K = eps W_{Q,K}`` with fixed random ``eps``; ``V = H W_V``.

    ``eps`` is a persistent buffer (saved with the weights) drawn from ``rndembqk_seed``; every layer
    uses the same ``eps`` with its own projections. Attention maps are the same for every input.
    """

    def __init__(self, config, layer_idx: int = 0):
        super().__init__(config, layer_idx)
        self.seed, self.std = config.rndembqk_seed, config.rndembqk_std
        self.register_buffer(
            "fixed_embeddings",
            fixed_random_embeddings(config.max_position_embeddings, config.hidden_size, self.seed, self.std),
        )

    def forward(self, hidden_states: torch.Tensor, ctx: MixerContext) -> tuple[torch.Tensor, None]:
        if ctx.position_ids is None:
            raise ValueError("rndembqk needs the position ids of the tokens")
        eps = self.fixed_embeddings.to(hidden_states.dtype)[ctx.position_ids]
        q = split_heads(self.q_proj(eps), self.num_heads)
        k = split_heads(self.k_proj(eps), self.num_heads)
        v = split_heads(self.v_proj(hidden_states), self.num_heads)
        k, v = self._cached(k, v, ctx)
        return self.o_proj(merge_heads(softmax_attention_call(q, k, v, ctx))), None


@register_mixer("staticembqk")
class StaticEmbQKAttention(_QKVAttention):
    """Q/K not tied to the current state: ``Q, K = e W_{Q,K}`` with ``e`` the layer-0 input; ``V = H W_V``."""

    def forward(self, hidden_states: torch.Tensor, ctx: MixerContext) -> tuple[torch.Tensor, None]:
        if ctx.input_embeddings is None:
            raise ValueError("staticembqk needs the model's input embeddings in the mixer context")
        e = ctx.input_embeddings
        q = split_heads(self.q_proj(e), self.num_heads)
        k = split_heads(self.k_proj(e), self.num_heads)
        v = split_heads(self.v_proj(hidden_states), self.num_heads)
        k, v = self._cached(k, v, ctx)
        return self.o_proj(merge_heads(softmax_attention_call(q, k, v, ctx))), None
