"""Standard causal multi-head scaled dot-product attention, the baseline mixer (Vaswani et al., 2017)."""

from __future__ import annotations

import torch
from torch import nn

from .registry import MixerContext, TokenMixer, register_mixer

__all__ = ["SoftmaxAttention", "split_heads", "merge_heads", "softmax_attention_call"]


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(batch, length, heads * dim)`` to ``(batch, heads, length, dim)``."""
    batch, length, width = x.shape
    return x.view(batch, length, num_heads, width // num_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(batch, heads, length, dim)`` to ``(batch, length, heads * dim)``."""
    batch, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * dim)


def softmax_attention_call(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: MixerContext, scale: float | None = None
) -> torch.Tensor:
    """Causal softmax attention of ``q`` (new tokens) over ``k, v`` (cached + new) through the kernels' op.

    A plain ``causal=True`` is used only when queries and keys cover the same positions; otherwise the
    context's explicit additive mask (or none, for a single new token, which sees every cached key).
    """
    # Imported here so that the model module imports without the kernels when only configs are needed.
    from attnzoo_kernels.ops.softmax import softmax_attention

    return softmax_attention(q, k, v, bias=ctx.attn_bias, causal=ctx.causal(q.shape[-2]), scale=scale)


@register_mixer("softmax")
class SoftmaxAttention(TokenMixer):
    """Multi-head attention: ``softmax(Q K^T / sqrt(d_h)) V`` with Q, K, V from the current hidden state."""

    def __init__(self, config, layer_idx: int = 0):
        super().__init__()
        self.num_heads = config.num_attention_heads
        width = config.hidden_size
        self.q_proj = nn.Linear(width, width, bias=False)
        self.k_proj = nn.Linear(width, width, bias=False)
        self.v_proj = nn.Linear(width, width, bias=False)
        self.o_proj = nn.Linear(width, width, bias=False)

    def forward(self, hidden_states: torch.Tensor, ctx: MixerContext) -> tuple[torch.Tensor, None]:
        q = split_heads(self.q_proj(hidden_states), self.num_heads)
        k = split_heads(self.k_proj(hidden_states), self.num_heads)
        v = split_heads(self.v_proj(hidden_states), self.num_heads)
        if ctx.cache is not None:
            k, v = ctx.cache.update(k, v, self.layer_idx)
        out = softmax_attention_call(q, k, v, ctx)
        return self.o_proj(merge_heads(out)), None
