"""MoH: Multi-Head Attention as Mixture-of-Head Attention (Jin et al., arXiv 2410.11842).

Attention heads are experts. Heads ``[0, shared)`` are *shared*: every token uses them. The
other ``heads - shared`` heads are *routed*: a linear router ``W_r`` scores them per token, a
softmax turns the scores into probabilities, the top ``k`` are kept and renormalised to sum to 1.
A two-way softmax ``W_h`` balances the shared group against the routed group, and the head
outputs are summed with these weights instead of a plain sum (Eq. 5-6 of the paper):

    g_shared = 2 * a_1 * S * softmax(W_s x)      (ones * S when there is a single shared head)
    g_routed = 2 * a_2 * k * renorm(topk(softmax(W_r x)))
    [a_1, a_2] = softmax(W_h x)

The scales ``S`` and ``k`` follow the authors' code (SkyworkAI/MoH, ``MoH-ViT/attention.py``),
which keeps a head's weight near 1 when routing is uniform. The load-balance loss is
``E * sum_i f_i P_i`` averaged as ``mean(me * ce) * E^2`` over the ``E`` routed heads, with
``me`` the mean routing probability and ``ce`` the fraction of tokens routed to each head.

Parameter names (``wg`` = ``W_r``, ``wg_0`` = ``W_h``, ``wg_1`` = ``W_s``) follow the official code.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .registry import MixerContext, TokenMixer, register_mixer
from .softmax import merge_heads, softmax_attention_call, split_heads

__all__ = [
    "MoHRouting",
    "MoHRouter",
    "MoHAttention",
    "MoHViTAttention",
    "load_balance_loss",
    "convert_official_moh_vit_attention",
]


class MoHRouting(NamedTuple):
    """The per-token head weights ``gates (batch, length, heads)``, the load-balance loss (None when
    no head is routed) and the boolean top-k mask over the routed heads ``(batch, length, heads - shared)``."""

    gates: torch.Tensor
    aux_loss: torch.Tensor | None
    routed_mask: torch.Tensor | None


def load_balance_loss(probabilities: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MoH's load-balance loss for routing ``probabilities`` and top-k ``mask``, both ``(tokens, experts)``.

    ``mean_e(P_e * f_e) * E^2`` with ``P_e`` the mean probability and ``f_e`` the fraction of tokens
    routed to expert ``e``; it is 1 when both are uniform and ``k = 1``.
    """
    num_experts = probabilities.shape[-1]
    mean_probability = probabilities.mean(dim=0)
    routed_fraction = mask.to(probabilities.dtype).mean(dim=0)
    return torch.mean(mean_probability * routed_fraction) * num_experts * num_experts


class MoHRouter(nn.Module):
    """Computes MoH's head weights from the token states ``x (batch, length, dim)``."""

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

    def forward(self, x: torch.Tensor) -> MoHRouting:
        batch, length, _ = x.shape
        shared = self.shared_heads
        if shared > 1:
            shared_gates = F.softmax(self.wg_1(x), dim=-1) * shared
        else:
            shared_gates = x.new_ones(batch, length, shared) * shared
        if self.routed_heads == 0:
            return MoHRouting(shared_gates, None, None)

        probabilities = F.softmax(self.wg(x), dim=-1)
        top = torch.topk(probabilities, k=self.routed_heads, dim=-1).indices
        mask = torch.zeros_like(probabilities, dtype=torch.bool).scatter_(-1, top, True)
        aux_loss = load_balance_loss(
            probabilities.reshape(batch * length, -1), mask.reshape(batch * length, -1)
        )
        routed = probabilities * mask
        routed = routed / routed.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(routed.dtype).eps)
        routed_gates = routed * self.routed_heads
        if shared == 0:
            return MoHRouting(routed_gates, aux_loss, mask)
        balance = F.softmax(self.wg_0(x), dim=-1) * 2
        gates = torch.cat([shared_gates * balance[..., :1], routed_gates * balance[..., 1:]], dim=-1)
        return MoHRouting(gates, aux_loss, mask)


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


class MoHViTAttention(nn.Module):
    """MoH attention of MoH-ViT (TransNeXt backbone, full-attention stage), same math as the official module.

    Length-scaled cosine attention with a learned query embedding and a continuous relative
    position bias from an MLP on ``relative_coords_table``, then MoH head weighting::

        attn = softmax(((norm(q) + e_q) * softplus(t) * log(H W)) norm(k)^T + cpb(rel)[idx])

    ``forward(x, H, W, relative_pos_index, relative_coords_table)`` takes the same inputs as the
    official ``Attention``. It is a timm-style drop-in only for TransNeXt-like models that provide
    these position tables; it is not a drop-in for plain timm ``VisionTransformer`` blocks.
    ``last_aux_loss`` holds the load-balance loss of the latest call (None when nothing is routed).
    """

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        shared_head: int = 0,
        routed_head: int = 0,
    ):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim ({dim}) must be a multiple of num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        # softplus(temperature) starts at 1 / 0.24, as in the official module.
        self.temperature = nn.Parameter(torch.full((num_heads, 1, 1), math.log(math.expm1(1 / 0.24))))
        self.seq_length_scale = math.log(input_resolution[0] * input_resolution[1])
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.query_embedding = nn.Parameter(
            nn.init.trunc_normal_(torch.empty(num_heads, 1, self.head_dim), std=0.02)
        )
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.cpb_fc1 = nn.Linear(2, 512)
        self.cpb_fc2 = nn.Linear(512, num_heads)
        self.router = MoHRouter(dim, num_heads, shared_head, routed_head)
        self.last_aux_loss: torch.Tensor | None = None

    def forward(
        self,
        x: torch.Tensor,
        H: int,
        W: int,
        relative_pos_index: torch.Tensor,
        relative_coords_table: torch.Tensor,
    ) -> torch.Tensor:
        batch, tokens, width = x.shape
        if tokens != H * W:
            raise ValueError(f"x has {tokens} tokens but H * W = {H * W}")
        routing = self.router(x)
        self.last_aux_loss = routing.aux_loss
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        table = self.cpb_fc2(torch.relu(self.cpb_fc1(relative_coords_table)))
        rel_bias = table.transpose(0, 1)[:, relative_pos_index.reshape(-1)].view(
            1, self.num_heads, tokens, tokens
        )
        q = (
            (F.normalize(q, dim=-1) + self.query_embedding)
            * F.softplus(self.temperature)
            * self.seq_length_scale
        )
        k = F.normalize(k, dim=-1)
        if self.training and self.attn_drop > 0:
            attn = torch.softmax(q @ k.transpose(-2, -1) + rel_bias, dim=-1)
            heads = F.dropout(attn, self.attn_drop) @ v
        else:
            from attnzoo_kernels.ops.softmax import softmax_attention

            bias = rel_bias.expand(batch, self.num_heads, tokens, tokens)
            heads = softmax_attention(q, k, v, bias=bias, scale=1.0)
        heads = heads * routing.gates.transpose(1, 2).unsqueeze(-1).to(heads.dtype)
        return self.proj_drop(self.proj(merge_heads(heads)))


def convert_official_moh_vit_attention(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the state dict of the official MoH-ViT ``Attention`` to :class:`MoHViTAttention`'s (router keys move)."""
    converted = {}
    for key, value in state_dict.items():
        head = key.split(".")[0]
        converted[f"router.{key}" if head in ("wg", "wg_0", "wg_1") else key] = value
    return converted
