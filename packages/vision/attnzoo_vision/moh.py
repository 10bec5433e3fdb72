"""MoH: Multi-Head Attention as Mixture-of-Head Attention (Jin et al., arXiv 2410.11842), for vision.

Attention heads are experts: the first ``shared_heads`` are used by every token, each token keeps the
top ``k`` of the others, and the head outputs are summed with per-token gates instead of a plain sum.
The gates, the router (``wg``, ``wg_0``, ``wg_1`` as in the authors' code) and the load-balance loss
come from ``attnzoo_kernels.ops.moh``; the attention itself from ``attnzoo_kernels.ops.softmax``.

* :class:`MoHAttention` — a drop-in for ``timm.models.vision_transformer.Attention`` (same ``qkv``,
  ``q_norm``, ``k_norm``, ``proj`` parameters, plus ``router.*``), and :func:`moh_vit`, which swaps
  it into every block of a timm ``VisionTransformer`` in place, keeping the pretrained weights.
* :func:`moh_vit_small` — the zoo model ``moh-vit-s``: timm's ViT-S/16 layout with MoH attention,
  randomly initialised (no MoH weights exist for this layout).
* :class:`MoHViTAttention` — the paper's own MoH-ViT attention (TransNeXt backbone, full-attention
  stage), same parameters and outputs as the official module; :func:`convert_official_moh_vit_attention`
  maps its official keys.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from attnzoo_kernels.ops.moh import MoHRouter
from attnzoo_kernels.ops.softmax import softmax_attention
from torch import nn

__all__ = [
    "MoHAttention",
    "MoHViTAttention",
    "convert_official_moh_vit_attention",
    "moh_load_balance_loss",
    "moh_vit",
    "moh_vit_small",
]


def _merge_heads(heads: torch.Tensor) -> torch.Tensor:
    batch, num_heads, tokens, head_dim = heads.shape
    return heads.transpose(1, 2).reshape(batch, tokens, num_heads * head_dim)


def _gate_heads(heads: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """Weight ``heads (B, H, N, D)`` by the per-token ``gates (B, N, H)``."""
    return heads * gates.transpose(1, 2).unsqueeze(-1).to(heads.dtype)


class MoHAttention(nn.Module):
    """MoH multi-head self-attention with the parameters of timm's ViT ``Attention``, plus a router.

    ``shared_heads`` heads are used by every token; each token keeps the top ``routed_topk`` of the
    other ``num_heads - shared_heads`` (0 only when every head is shared). The router reads the same
    (pre-normed) token states as ``qkv``, as in MoH-ViT. ``forward(x, attn_mask=None, is_causal=False)``
    matches timm's; ``last_aux_loss`` holds the load-balance loss of the latest call (None when no
    head is routed).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_norm: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        *,
        shared_heads: int,
        routed_topk: int,
        proj_bias: bool = True,
        scale_norm: bool = False,
        depth: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim ({dim}) must be a multiple of num_heads ({num_heads})")
        if scale_norm:
            raise ValueError("MoHAttention does not support scale_norm=True (timm's post-attention norm)")
        dd = {"device": device, "dtype": dtype}
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias, **dd)
        self.q_norm = norm_layer(self.head_dim, **dd) if qk_norm else nn.Identity()
        self.k_norm = norm_layer(self.head_dim, **dd) if qk_norm else nn.Identity()
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, bias=proj_bias, **dd)
        self.proj_drop = nn.Dropout(proj_drop)
        self.router = MoHRouter(dim, num_heads, shared_heads, routed_topk).to(**dd)
        self.last_aux_loss: torch.Tensor | None = None

    @classmethod
    def from_timm(cls, attn: nn.Module, *, shared_heads: int, routed_topk: int) -> MoHAttention:
        """A MoH attention that reuses the ``qkv``, ``q_norm``, ``k_norm`` and ``proj`` modules of timm's ``attn``."""
        unsupported = []
        if getattr(attn, "gate", None) is not None:
            unsupported.append("gated=True")
        if not isinstance(getattr(attn, "norm", nn.Identity()), nn.Identity):
            unsupported.append("scale_norm=True")
        if not all(hasattr(attn, name) for name in ("qkv", "proj", "num_heads", "head_dim")):
            unsupported.append(
                "not a timm vision_transformer.Attention (needs qkv, proj, num_heads, head_dim)"
            )
        elif attn.num_heads * attn.head_dim != attn.qkv.in_features:
            unsupported.append("attn_head_dim * num_heads != dim")
        if unsupported:
            raise ValueError(f"cannot swap {type(attn).__name__} for MoHAttention: " + "; ".join(unsupported))
        weight = attn.qkv.weight
        with torch.device("meta"):
            moh = cls(
                attn.qkv.in_features,
                attn.num_heads,
                shared_heads=shared_heads,
                routed_topk=routed_topk,
                attn_drop=attn.attn_drop.p,
                proj_drop=attn.proj_drop.p,
            )
        moh.qkv, moh.q_norm, moh.k_norm, moh.proj = attn.qkv, attn.q_norm, attn.k_norm, attn.proj
        moh.router = MoHRouter(moh.qkv.in_features, attn.num_heads, shared_heads, routed_topk).to(
            device=weight.device, dtype=weight.dtype
        )
        return moh

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        batch, tokens, _ = x.shape
        routing = self.router(x)
        self.last_aux_loss = routing.aux_loss
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        dropout_p = self.attn_drop.p if self.training else 0.0
        heads = softmax_attention(
            q, k, v, attn_mask=attn_mask, causal=is_causal, scale=self.scale, dropout_p=dropout_p
        )
        heads = _gate_heads(heads, routing.gates)
        return self.proj_drop(self.proj(_merge_heads(heads)))


def moh_vit(model: nn.Module, *, shared_heads: int, topk: int) -> nn.Module:
    """Swap the attention of every block of a timm ``VisionTransformer`` for :class:`MoHAttention`, in place.

    The ``qkv``/``proj`` (and q/k norm) weights are kept, so a pretrained ViT's state dict still loads;
    the routers (``blocks.<i>.attn.router.*``) are new, initialised as ``nn.Linear``. Returns ``model``.
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None or not len(blocks):
        raise ValueError(f"moh_vit needs a timm VisionTransformer with .blocks; got {type(model).__name__}")
    for index, block in enumerate(blocks):
        if not hasattr(block, "attn"):
            raise ValueError(f"moh_vit: block {index} ({type(block).__name__}) has no .attn")
        if not isinstance(block.attn, MoHAttention):
            block.attn = MoHAttention.from_timm(block.attn, shared_heads=shared_heads, routed_topk=topk)
    return model


def moh_load_balance_loss(model: nn.Module) -> torch.Tensor | None:
    """Mean load-balance loss of the latest forward over the model's MoH attentions (None if none routed).

    Add it to the task loss with a small weight in training (the authors use 0.01).
    """
    losses = [
        m.last_aux_loss
        for m in model.modules()
        if isinstance(m, MoHAttention | MoHViTAttention) and m.last_aux_loss is not None
    ]
    return torch.stack(losses).mean() if losses else None


def moh_vit_small(
    *, shared_heads: int = 2, routed_topk: int = 2, num_classes: int = 1000, **kwargs
) -> nn.Module:
    """``moh-vit-s``: timm ``vit_small_patch16_224`` (384 wide, 12 blocks, 6 heads) with MoH attention.

    Defaults: 2 shared heads and the top 2 of the 4 routed heads per token (4 of 6 heads active).
    Randomly initialised; ``kwargs`` go to ``timm.create_model`` (e.g. ``img_size``, ``drop_path_rate``).
    """
    import timm

    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=num_classes, **kwargs)
    return moh_vit(model, shared_heads=shared_heads, topk=routed_topk)


class MoHViTAttention(nn.Module):
    """MoH attention of MoH-ViT (TransNeXt backbone, full-attention stage), same math as the official module.

    Length-scaled cosine attention with a learned query embedding and a continuous relative
    position bias from an MLP on ``relative_coords_table``, then MoH head weighting::

        attn = softmax(((norm(q) + e_q) * softplus(t) * log(H W)) norm(k)^T + cpb(rel)[idx])

    ``forward(x, H, W, relative_pos_index, relative_coords_table)`` takes the same inputs as the
    official ``Attention``. It fits TransNeXt-like models that provide these position tables, not
    plain timm ``VisionTransformer`` blocks (use :class:`MoHAttention` there).
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
        batch, tokens, _ = x.shape
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
        bias = rel_bias.expand(batch, self.num_heads, tokens, tokens)
        dropout_p = self.attn_drop if self.training else 0.0
        heads = softmax_attention(q, k, v, bias=bias, scale=1.0, dropout_p=dropout_p)
        heads = _gate_heads(heads, routing.gates)
        return self.proj_drop(self.proj(_merge_heads(heads)))


def convert_official_moh_vit_attention(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the state dict of the official MoH-ViT ``Attention`` to :class:`MoHViTAttention`'s (router keys move)."""
    converted = {}
    for key, value in state_dict.items():
        head = key.split(".")[0]
        converted[f"router.{key}" if head in ("wg", "wg_0", "wg_1") else key] = value
    return converted
