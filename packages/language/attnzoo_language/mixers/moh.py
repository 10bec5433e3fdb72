"""MoH: Multi-Head Attention as Mixture-of-Head Attention (Jin et al., arXiv 2410.11842), as an LM mixer.

Attention heads are experts. Heads ``[0, shared)`` are *shared*: every token uses them. The
other ``heads - shared`` heads are *routed*: a linear router ``W_r`` scores them per token, a
softmax turns the scores into probabilities, the top ``k`` are kept and renormalised to sum to 1.
A two-way softmax ``W_h`` balances the shared group against the routed group, and the head
outputs are summed with these weights instead of a plain sum (Eq. 5-6 of the paper):

    g_shared = 2 * a_1 * S * softmax(W_s x)      (ones * S when there is a single shared head)
    g_routed = 2 * a_2 * k * renorm(topk(softmax(W_r x)))
    [a_1, a_2] = softmax(W_h x)

The gating math, the router module and the load-balance loss live in ``attnzoo_kernels.ops.moh``
(shared with the vision MoH attention, ``attnzoo_vision.moh``); this module re-exports them.
The scales ``S`` and ``k`` follow the authors' code (SkyworkAI/MoH, ``MoH-ViT/attention.py``).
Parameter names (``wg`` = ``W_r``, ``wg_0`` = ``W_h``, ``wg_1`` = ``W_s``) follow the official code.
"""

from __future__ import annotations

import torch
from attnzoo_kernels.ops.moh import MoHGates, MoHRouter, load_balance_loss
from torch import nn

from .registry import MixerContext, TokenMixer, register_mixer
from .softmax import merge_heads, softmax_attention_call, split_heads

__all__ = ["MoHRouting", "MoHRouter", "MoHAttention", "load_balance_loss"]

# The router's output: ``gates``, ``aux_loss`` and ``routed_mask`` (the kernels' ``MoHGates``).
MoHRouting = MoHGates


@register_mixer("moh")
class MoHAttention(TokenMixer):
    """Causal MoH attention for the decoder: standard dot-product heads, weighted per token by :class:`MoHRouter`.

    The router sees the same normalised hidden state as the projections (as in MoH-ViT and the
    from-scratch MoH-LLM); each token's gates depend only on that token, so decoding is causal.
    """

    def __init__(self, config, layer_idx: int = 0):
        super().__init__()
        self.num_heads = config.num_attention_heads
        width = config.hidden_size
        self.q_proj = nn.Linear(width, width, bias=False)
        self.k_proj = nn.Linear(width, width, bias=False)
        self.v_proj = nn.Linear(width, width, bias=False)
        self.o_proj = nn.Linear(width, width, bias=False)
        self.router = MoHRouter(width, self.num_heads, config.moh_shared_heads, config.moh_routed_heads)

    def forward(
        self, hidden_states: torch.Tensor, ctx: MixerContext
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        routing = self.router(hidden_states)
        q = split_heads(self.q_proj(hidden_states), self.num_heads)
        k = split_heads(self.k_proj(hidden_states), self.num_heads)
        v = split_heads(self.v_proj(hidden_states), self.num_heads)
        if ctx.cache is not None:
            k, v = ctx.cache.update(k, v, self.layer_idx)
        heads = softmax_attention_call(q, k, v, ctx)
        heads = heads * routing.gates.transpose(1, 2).unsqueeze(-1).to(heads.dtype)
        return self.o_proj(merge_heads(heads)), routing.aux_loss
