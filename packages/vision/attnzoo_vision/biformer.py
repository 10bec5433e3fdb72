"""BiFormer: Vision Transformer with Bi-Level Routing Attention (Zhu et al., CVPR 2023, arXiv 2303.08810).

Re-implemented from the paper and the authors' code (https://github.com/rayleizhu/BiFormer, MIT).
State-dict keys and shapes equal the official ones, so the released ImageNet-1k checkpoints load
strictly (through ``convert_official``), and outputs equal the official model's up to rounding.
Bi-level routing attention runs through ``attnzoo_kernels.ops.routing.routing_attention``.

Importing this module registers ``biformer_tiny``, ``biformer_small``, ``biformer_base`` and
``biformer_stl`` with timm, so after ``import attnzoo_vision.biformer`` (which ``zoo.load`` does)
``timm.create_model("biformer_small", features_only=True)`` works. ``import attnzoo_vision`` alone
stays torch-free and registers nothing with timm.

Layout: a conv stem and three strided-conv downsamplings feed four stages of blocks
(``x + DWConv3x3(x)``, then pre-norm attention and MLP in channels-last). Stages 1-3 use
bi-level routing attention over ``n_win x n_win`` regions with ``topks = (1, 4, 16)``; stage 4
uses global attention with a local enhancement (LePE) term, as in the released models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from attnzoo_kernels.ops.routing import routing_attention
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, LayerNorm2d, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch.utils.checkpoint import checkpoint

__all__ = [
    "BiFormer",
    "BiFormerSTL",
    "BiLevelRoutingAttention",
    "AttentionLePE",
    "biformer_tiny",
    "biformer_small",
    "biformer_base",
    "biformer_stl",
    "convert_official",
    "checkpoint_filter_fn",
    "nearest_fitting_sizes",
]

# stage-4 global attention in the released models uses the official AttentionLePE default of 8 heads
GLOBAL_ATTENTION_HEADS = 8


def _drop_path_rates(depths: Sequence[int], rate: float) -> list[float]:
    """Stochastic depth rising linearly over all blocks; plain Python so meta-device builds work."""
    total = sum(depths)
    return [rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]


def nearest_fitting_sizes(size: int, fits: Callable[[int], bool], search: int) -> list[int]:
    """The closest input sizes below and above ``size`` (at most ``search`` away) for which ``fits`` holds."""
    below = next((s for s in range(size - 1, max(size - search, 0), -1) if fits(s)), None)
    above = next((s for s in range(size + 1, size + search + 1) if fits(s)), None)
    return [s for s in (below, above) if s is not None]


class QKVLinear(nn.Module):
    """One linear map to queries, keys and values (official key ``attn.qkv.qkv``)."""

    def __init__(self, dim: int, qk_dim: int) -> None:
        super().__init__()
        self.dim, self.qk_dim = dim, qk_dim
        self.qkv = nn.Linear(dim, 2 * qk_dim + dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.qkv(x).split([self.qk_dim, self.qk_dim, self.dim], dim=-1)


class BiLevelRoutingAttention(nn.Module):
    """Bi-level routing attention with a depth-wise local enhancement (LePE) on the values.

    Region-to-region routing keeps the ``topk`` most related of ``n_win**2`` regions for every
    region; tokens then attend to the tokens of the routed regions. As in the released models the
    softmax scale is ``qk_dim ** -0.5`` over the *whole* query/key width, not per head, and the
    routing is hard and non-differentiable. Takes and returns channels-last ``(N, H, W, C)``.

    With ``auto_pad`` the map is zero-padded at the bottom/right to a multiple of ``n_win`` and
    the output cropped back; without it, a map that ``n_win`` does not divide raises ValueError.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        n_win: int = 7,
        qk_dim: int | None = None,
        qk_scale: float | None = None,
        topk: int = 4,
        side_dwconv: int = 5,
        auto_pad: bool = False,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.qk_dim = qk_dim or dim
        if self.qk_dim % num_heads or dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide qk_dim={self.qk_dim} and dim={dim}")
        if not 1 <= topk <= n_win * n_win:
            raise ValueError(f"topk={topk} must lie in [1, n_win**2 = {n_win * n_win}] (n_win={n_win})")
        self.num_heads, self.n_win, self.topk, self.auto_pad = num_heads, n_win, topk, auto_pad
        self.scale = qk_scale or self.qk_dim**-0.5
        self.lepe = (
            nn.Conv2d(dim, dim, side_dwconv, padding=side_dwconv // 2, groups=dim)
            if side_dwconv > 0
            else None
        )
        self.qkv = QKVLinear(dim, self.qk_dim)
        self.wo = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, height, width, _ = x.shape
        pad_bottom = (self.n_win - height % self.n_win) % self.n_win
        pad_right = (self.n_win - width % self.n_win) % self.n_win
        if pad_bottom or pad_right:
            if not self.auto_pad:
                raise ValueError(
                    f"feature map {height}x{width} is not divisible by n_win={self.n_win}; "
                    "build the model with auto_pad=True to pad it"
                )
            x = F.pad(x, (0, 0, 0, pad_right, 0, pad_bottom))
        q, k, v = self.qkv(x)
        out = routing_attention(
            q, k, v, num_heads=self.num_heads, n_win=self.n_win, topk=self.topk, scale=self.scale
        )
        if self.lepe is not None:
            out = out + self.lepe(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        out = self.wo(out)
        if pad_bottom or pad_right:
            out = out[:, :height, :width].contiguous()
        return out

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, n_win={self.n_win}, topk={self.topk}, auto_pad={self.auto_pad}"


class AttentionLePE(nn.Module):
    """Global multi-head attention plus a depth-wise conv of the block input (stage 4; official ``topk=-2``).

    Runs through the routing op with one region routed to itself, which is exactly global attention.
    """

    def __init__(self, dim: int, num_heads: int = GLOBAL_ATTENTION_HEADS, side_dwconv: int = 5) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide dim={dim}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.lepe = (
            nn.Conv2d(dim, dim, side_dwconv, padding=side_dwconv // 2, groups=dim)
            if side_dwconv > 0
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        out = routing_attention(q, k, v, num_heads=self.num_heads, n_win=1, topk=1, scale=self.scale)
        if self.lepe is not None:
            out = out + self.lepe(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.proj(out)


class DWConv(nn.Module):
    """Depth-wise 3x3 conv inside the MLP (``mlp_dwconv=True``; not used by the released models)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def _attention(
    dim: int,
    num_heads: int,
    n_win: int,
    qk_dim: int | None,
    qk_scale: float | None,
    topk: int,
    side_dwconv: int,
    auto_pad: bool,
) -> nn.Module:
    if topk > 0:
        return BiLevelRoutingAttention(dim, num_heads, n_win, qk_dim, qk_scale, topk, side_dwconv, auto_pad)
    if topk == -2:
        return AttentionLePE(dim, side_dwconv=side_dwconv)
    raise ValueError(
        f"topk={topk} is not supported: use topk > 0 (routing) or -2 (global attention with LePE)"
    )


class Block(nn.Module):
    """``x + DWConv(x)``, then attention and MLP with residuals, in channels-last. Takes and returns NCHW."""

    def __init__(
        self,
        dim: int,
        drop_path: float = 0.0,
        layer_scale_init_value: float = -1.0,
        num_heads: int = 8,
        n_win: int = 7,
        qk_dim: int | None = None,
        qk_scale: float | None = None,
        topk: int = 4,
        mlp_ratio: float = 4.0,
        mlp_dwconv: bool = False,
        side_dwconv: int = 5,
        before_attn_dwconv: int = 3,
        pre_norm: bool = True,
        auto_pad: bool = False,
    ) -> None:
        super().__init__()
        self.pos_embed = (
            nn.Conv2d(dim, dim, before_attn_dwconv, padding=before_attn_dwconv // 2, groups=dim)
            if before_attn_dwconv > 0
            else None
        )
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _attention(dim, num_heads, n_win, qk_dim, qk_scale, topk, side_dwconv, auto_pad)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(mlp_ratio * dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            DWConv(hidden) if mlp_dwconv else nn.Identity(),
            nn.GELU(),
            nn.Linear(hidden, dim),
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        if layer_scale_init_value > 0:
            self.gamma1 = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
            self.gamma2 = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
        else:
            self.gamma1 = self.gamma2 = None
        self.pre_norm = pre_norm

    def _scaled(self, gamma: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        return x if gamma is None else gamma * x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pos_embed is not None:
            x = x + self.pos_embed(x)
        x = x.permute(0, 2, 3, 1)
        if self.pre_norm:
            x = x + self.drop_path(self._scaled(self.gamma1, self.attn(self.norm1(x))))
            x = x + self.drop_path(self._scaled(self.gamma2, self.mlp(self.norm2(x))))
        else:  # post-norm variant of the official code
            x = self.norm1(x + self.drop_path(self._scaled(self.gamma1, self.attn(x))))
            x = self.norm2(x + self.drop_path(self._scaled(self.gamma2, self.mlp(x))))
        return x.permute(0, 3, 1, 2)


class _BiFormerBase(nn.Module):
    """timm-facing behaviour shared by BiFormer and BiFormer-STL (heads, features, size checks)."""

    downsample_layers: nn.ModuleList
    stages: nn.ModuleList
    embed_dim: list[int]
    stage_n_wins: list[int]
    topks: list[int]
    auto_pad: bool
    dense_prediction: bool

    def _init_head(self, num_classes: int, drop_rate: float) -> None:
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = self.embed_dim[-1]
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.feature_info = [
            {"num_chs": dim, "reduction": 2 ** (i + 2), "module": f"stages.{i}"}
            for i, dim in enumerate(self.embed_dim)
        ]
        if self.dense_prediction:
            # as the official detection/segmentation backbone: no head, a LayerNorm2d per stage output
            self.extra_norms = nn.ModuleList(LayerNorm2d(dim) for dim in self.embed_dim)
        else:
            self.norm = nn.BatchNorm2d(self.embed_dim[-1])
            self.head_drop = nn.Dropout(drop_rate)
            self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.zeros_(m.bias)
            nn.init.ones_(m.weight)

    # ---- input sizes -------------------------------------------------------------------------
    def stage_size(self, size: int, stage: int) -> int:
        """Side of the feature map at ``stage`` (0-based) for an input side of ``size``."""
        raise NotImplementedError

    def _fits(self, size: int) -> bool:
        for stage in range(len(self.stages)):
            side = self.stage_size(size, stage)
            if side < 1 or (self.topks[stage] > 0 and side % self.stage_n_wins[stage]):
                return False
        return True

    def check_input_size(self, height: int, width: int) -> None:
        """Raise ValueError when ``n_win`` does not divide a routed stage's map (and auto_pad is off)."""
        if self.auto_pad:
            return
        for stage in range(len(self.stages)):
            n_win = self.stage_n_wins[stage]
            h, w = self.stage_size(height, stage), self.stage_size(width, stage)
            if self.topks[stage] <= 0 or (h % n_win == 0 and w % n_win == 0):
                continue
            search = 64 * max(self.stage_n_wins)
            if height == width:
                hint = "nearest input sizes that fit: " + ", ".join(
                    map(str, nearest_fitting_sizes(height, self._fits, search))
                )
            else:
                hints = []
                for label, side, bad in (("heights", height, h % n_win), ("widths", width, w % n_win)):
                    if bad:
                        sizes = nearest_fitting_sizes(side, self._fits, search)
                        hints.append(f"nearest {label} that fit: " + ", ".join(map(str, sizes)))
                hint = "; ".join(hints)
            raise ValueError(
                f"input {height}x{width} gives feature map {h}x{w} at stage {stage + 1}, which is not divisible "
                f"by n_win={n_win}; {hint} (or build the model with auto_pad=True)"
            )

    # ---- forward -----------------------------------------------------------------------------
    def _run_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample_layers[index](x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint(self.stages[index], x, use_reentrant=False)
        return self.stages[index](x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Classification: the normed last-stage map (N, C, H/32, W/32). Dense mode: the per-stage normed maps."""
        self.check_input_size(x.shape[-2], x.shape[-1])
        if self.dense_prediction:
            outs = []
            for i in range(len(self.stages)):
                x = self._run_stage(i, x)
                outs.append(self.extra_norms[i](x))
            return tuple(outs)
        for i in range(len(self.stages)):
            x = self._run_stage(i, x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, then the linear classifier (or the pooled features with ``pre_logits``)."""
        if self.dense_prediction:
            raise RuntimeError("a dense_prediction backbone has no classification head")
        x = x.flatten(2).mean(-1)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        x = self.forward_features(x)
        return x if self.dense_prediction else self.forward_head(x)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's feature API: stage outputs at ``indices`` (NCHW), and the final features unless only those.

        In dense mode every intermediate goes through its stage's extra norm; otherwise ``norm``
        applies the final BatchNorm to the last stage's output.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt={output_fmt!r} is not supported; BiFormer features are NCHW")
        self.check_input_size(x.shape[-2], x.shape[-1])
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        last = max_index if stop_early or intermediates_only else len(self.stages) - 1
        intermediates = []
        for i in range(last + 1):
            x = self._run_stage(i, x)
            if i in take_indices:
                if self.dense_prediction:
                    intermediates.append(self.extra_norms[i](x))
                elif norm and i == len(self.stages) - 1:
                    intermediates.append(self.norm(x))
                else:
                    intermediates.append(x)
        if intermediates_only:
            return intermediates
        if not self.dense_prediction and last == len(self.stages) - 1:
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last wanted one (and the final norm/head if asked)."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        self.stages = self.stages[: max_index + 1]
        self.downsample_layers = self.downsample_layers[: max_index + 1]
        if not self.dense_prediction:
            if prune_norm:
                self.norm = nn.Identity()
            if prune_head:
                self.reset_classifier(0)
        return take_indices

    # ---- timm conveniences -------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh linear head for ``num_classes`` (identity for 0). Pooling is always the mean."""
        if global_pool not in (None, "", "avg"):
            raise ValueError(f"global_pool={global_pool!r} is not supported; BiFormer pools by averaging")
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()


class BiFormer(_BiFormerBase):
    """BiFormer (tiny/small/base): conv stem, strided-conv downsampling and four stages of BiFormer blocks.

    Args:
        depth: blocks per stage.
        in_chans: input channels.
        num_classes: classifier outputs (0 for none).
        embed_dim: channels per stage.
        head_dim: channels per head; heads per stage = ``qk_dims[i] // head_dim``.
        qk_scale: softmax scale override (default ``qk_dim ** -0.5``, as in the official code).
        drop_path_rate: stochastic depth at the last block.
        drop_rate: dropout before the classifier.
        n_win: regions per side in routing attention.
        topks: routed regions per stage; ``-2`` means global attention with LePE.
        qk_dims: query/key channels per stage (``None``: the stage's ``embed_dim``).
        side_dwconv: LePE kernel size (0 turns it off).
        before_attn_dwconv: kernel of the conv positional embedding at each block's start.
        layer_scale_init_value: layer scale init (off when <= 0).
        mlp_ratios: MLP expansion per stage.
        mlp_dwconv: a depth-wise conv inside the MLP.
        pre_norm: pre-norm (True) or post-norm blocks.
        auto_pad: zero-pad maps that ``n_win`` does not divide (the official segmentation setting).
        dense_prediction: return the four per-stage maps normed by ``extra_norms`` (LayerNorm2d), without
            the final norm and the head, as the official detection/segmentation backbone does.
        kv_downsample_mode: only ``"identity"`` (no key/value pooling) is supported, as in the released models.
    """

    def __init__(
        self,
        depth: Sequence[int] = (2, 2, 8, 2),
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: Sequence[int] = (64, 128, 256, 512),
        head_dim: int = 32,
        qk_scale: float | None = None,
        drop_path_rate: float = 0.0,
        drop_rate: float = 0.0,
        n_win: int = 7,
        topks: Sequence[int] = (1, 4, 16, -2),
        qk_dims: Sequence[int | None] = (None, None, None, None),
        side_dwconv: int = 5,
        before_attn_dwconv: int = 3,
        layer_scale_init_value: float = -1.0,
        mlp_ratios: Sequence[float] = (3, 3, 3, 3),
        mlp_dwconv: bool = False,
        pre_norm: bool = True,
        auto_pad: bool = False,
        dense_prediction: bool = False,
        kv_downsample_mode: str = "identity",
    ) -> None:
        super().__init__()
        if kv_downsample_mode != "identity":
            raise ValueError(
                f"kv_downsample_mode={kv_downsample_mode!r} is not supported; only 'identity' is"
            )
        if not (len(depth) == len(embed_dim) == len(topks) == len(qk_dims) == len(mlp_ratios) == 4):
            raise ValueError("depth, embed_dim, topks, qk_dims and mlp_ratios need one entry per stage (4)")
        self.embed_dim = list(embed_dim)
        self.topks = list(topks)
        self.stage_n_wins = [n_win] * 4
        self.auto_pad = auto_pad
        self.dense_prediction = dense_prediction
        qk_dims = [qk or dim for qk, dim in zip(qk_dims, embed_dim)]

        stem = nn.Sequential(
            nn.Conv2d(in_chans, embed_dim[0] // 2, 3, stride=2, padding=1),
            nn.BatchNorm2d(embed_dim[0] // 2),
            nn.GELU(),
            nn.Conv2d(embed_dim[0] // 2, embed_dim[0], 3, stride=2, padding=1),
            nn.BatchNorm2d(embed_dim[0]),
        )
        self.downsample_layers = nn.ModuleList([stem])
        for i in range(3):
            self.downsample_layers.append(
                nn.Sequential(
                    nn.Conv2d(embed_dim[i], embed_dim[i + 1], 3, stride=2, padding=1),
                    nn.BatchNorm2d(embed_dim[i + 1]),
                )
            )

        rates = iter(_drop_path_rates(depth, drop_path_rate))
        self.stages = nn.ModuleList(
            nn.Sequential(
                *(
                    Block(
                        embed_dim[i],
                        drop_path=next(rates),
                        layer_scale_init_value=layer_scale_init_value,
                        num_heads=qk_dims[i] // head_dim,
                        n_win=n_win,
                        qk_dim=qk_dims[i],
                        qk_scale=qk_scale,
                        topk=topks[i],
                        mlp_ratio=mlp_ratios[i],
                        mlp_dwconv=mlp_dwconv,
                        side_dwconv=side_dwconv,
                        before_attn_dwconv=before_attn_dwconv,
                        pre_norm=pre_norm,
                        auto_pad=auto_pad,
                    )
                    for _ in range(depth[i])
                )
            )
            for i in range(4)
        )
        self._init_head(num_classes, drop_rate)

    def stage_size(self, size: int, stage: int) -> int:
        # the stem's two and every later 3x3/stride-2/pad-1 conv map n to ceil(n / 2)
        for _ in range(stage + 2):
            size = (size + 1) // 2
        return size


class BiFormerSTLBlock(nn.Module):
    """Pre-norm attention and MLP with residuals, channels-last in and out (no conv positional embedding)."""

    def __init__(
        self,
        dim: int,
        drop_path: float,
        num_heads: int,
        n_win: int,
        topk: int,
        mlp_ratio: float,
        side_dwconv: int,
        auto_pad: bool,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _attention(dim, num_heads, n_win, None, None, topk, side_dwconv, auto_pad)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(mlp_ratio * dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class BiFormerSTLStage(nn.Module):
    """A stage of BiFormer-STL: NCHW in, blocks in channels-last, NCHW out."""

    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        return x.permute(0, 3, 1, 2)


class BiFormerSTL(_BiFormerBase):
    """BiFormer-STL: Swin-T's layout (4x4 patch stem, 2x2 patch merging, depths 2-2-6-2) with routing attention.

    The ablation model of the paper. Norms in the stem, the patch merging and before the head are
    BatchNorm2d as in the released checkpoint; heads are ``embed_dim[i] // head_dim``.
    """

    def __init__(
        self,
        depth: Sequence[int] = (2, 2, 6, 2),
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: Sequence[int] = (96, 192, 384, 768),
        head_dim: int = 32,
        drop_path_rate: float = 0.0,
        drop_rate: float = 0.0,
        mlp_ratios: Sequence[float] = (4, 4, 4, 4),
        n_wins: Sequence[int] = (7, 7, 7, 7),
        topks: Sequence[int] = (1, 4, 16, -2),
        side_dwconv: int = 5,
        auto_pad: bool = False,
        dense_prediction: bool = False,
    ) -> None:
        super().__init__()
        if not (len(depth) == len(embed_dim) == len(mlp_ratios) == len(n_wins) == len(topks) == 4):
            raise ValueError("depth, embed_dim, mlp_ratios, n_wins and topks need one entry per stage (4)")
        self.embed_dim = list(embed_dim)
        self.topks = list(topks)
        self.stage_n_wins = list(n_wins)
        self.auto_pad = auto_pad
        self.dense_prediction = dense_prediction

        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_chans, embed_dim[0], 4, stride=4), nn.BatchNorm2d(embed_dim[0]))]
        )
        for i in range(3):
            self.downsample_layers.append(
                nn.Sequential(
                    nn.BatchNorm2d(embed_dim[i]), nn.Conv2d(embed_dim[i], embed_dim[i + 1], 2, stride=2)
                )
            )
        rates = iter(_drop_path_rates(depth, drop_path_rate))
        self.stages = nn.ModuleList(
            BiFormerSTLStage(
                [
                    BiFormerSTLBlock(
                        embed_dim[i],
                        drop_path=next(rates),
                        num_heads=embed_dim[i] // head_dim,
                        n_win=n_wins[i],
                        topk=topks[i],
                        mlp_ratio=mlp_ratios[i],
                        side_dwconv=side_dwconv,
                        auto_pad=auto_pad,
                    )
                    for _ in range(depth[i])
                ]
            )
            for i in range(4)
        )
        self._init_head(num_classes, drop_rate)

    def stage_size(self, size: int, stage: int) -> int:
        # 4x4/stride-4 stem, then 2x2/stride-2 merging, both without padding
        size //= 4
        for _ in range(stage):
            size //= 2
        return size


# ---- checkpoints -----------------------------------------------------------------------------


def _strip_module_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """Official checkpoints are saved unwrapped; a DDP-wrapped save adds ``module.`` to every key."""
    if state and all(key.startswith("module.") for key in state):
        return {key[len("module.") :]: value for key, value in state.items()}
    return dict(state)


def convert_official(checkpoint: Any, spec: Any = None) -> dict[str, torch.Tensor]:
    """The official BiFormer checkpoint (``{'model': state_dict}`` or a bare state dict) as our state dict.

    Our keys equal the official ones, so this only unwraps the checkpoint and drops a DDP prefix.
    ``spec`` (the zoo's ModelSpec) is accepted for the converter protocol and not needed.
    """
    from attnzoo.checkpoints import unwrap_state_dict

    return _strip_module_prefix(unwrap_state_dict(checkpoint, keys=("model", "state_dict", "module")))


def checkpoint_filter_fn(state_dict: Mapping[str, Any], model: nn.Module) -> dict[str, Any]:
    """timm's ``pretrained_filter_fn``: unwrap an official ``{'model': ...}`` checkpoint."""
    if "model" in state_dict and isinstance(state_dict["model"], Mapping):
        state_dict = state_dict["model"]
    return _strip_module_prefix(state_dict)


# ---- pretrained configs and timm entry points --------------------------------------------------

OFFICIAL_CHECKPOINTS = {
    "biformer_tiny": "https://api.onedrive.com/v1.0/shares/s!AkBbczdRlZvChHEOoGkgwgQzEDlM/root/content",
    "biformer_small": "https://api.onedrive.com/v1.0/shares/s!AkBbczdRlZvChHDyM-x9KWRBZ832/root/content",
    "biformer_base": "https://api.onedrive.com/v1.0/shares/s!AkBbczdRlZvChHI_XPhoadjaNxtO/root/content",
    "biformer_stl": "https://api.onedrive.com/v1.0/shares/s!AkBbczdRlZvChSf-m7ujkvx9lIQ1/root/content",
}
HUB_REPOS = {
    "biformer_tiny": "attnzoo/biformer-tiny",
    "biformer_small": "attnzoo/biformer-small",
    "biformer_base": "attnzoo/biformer-base",
    "biformer_stl": "attnzoo/biformer-stl",
}


def _cfg(name: str, **kwargs: Any) -> dict[str, Any]:
    # the official repo's timm _cfg() states ViT defaults (0.5 mean/std, crop 0.9); the models were
    # trained and evaluated with ImageNet mean/std, bicubic resizing and crop_pct 0.875 at 224
    return {
        "url": OFFICIAL_CHECKPOINTS[name],
        "hf_hub_id": HUB_REPOS[name],
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "downsample_layers.0.0",
        "classifier": "head",
        "license": "mit",
        "origin_url": "https://github.com/rayleizhu/BiFormer",
        "paper_ids": "arXiv:2303.08810",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({f"{name}.in1k": _cfg(name) for name in OFFICIAL_CHECKPOINTS})


def _create(
    name: str, model_cls: type[nn.Module], pretrained: bool, model_args: dict, kwargs: dict
) -> nn.Module:
    return build_model_with_cfg(
        model_cls,
        name,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg={"out_indices": (0, 1, 2, 3), "feature_cls": "getter"},
        **{**model_args, **kwargs},
    )


_RELEASED = {
    "topks": (1, 4, 16, -2),
    "n_win": 7,
    "head_dim": 32,
    "mlp_ratios": (3, 3, 3, 3),
    "side_dwconv": 5,
}


@register_model
def biformer_tiny(pretrained: bool = False, **kwargs: Any) -> BiFormer:
    """BiFormer-T: depths 2-2-8-2, widths 64-128-256-512 (13.1 M params, 81.4 % ImageNet top-1)."""
    args = dict(_RELEASED, depth=(2, 2, 8, 2), embed_dim=(64, 128, 256, 512), qk_dims=(64, 128, 256, 512))
    return _create("biformer_tiny", BiFormer, pretrained, args, kwargs)


@register_model
def biformer_small(pretrained: bool = False, **kwargs: Any) -> BiFormer:
    """BiFormer-S: depths 4-4-18-4, widths 64-128-256-512 (25.5 M params, 83.8 % ImageNet top-1)."""
    args = dict(_RELEASED, depth=(4, 4, 18, 4), embed_dim=(64, 128, 256, 512), qk_dims=(64, 128, 256, 512))
    return _create("biformer_small", BiFormer, pretrained, args, kwargs)


@register_model
def biformer_base(pretrained: bool = False, **kwargs: Any) -> BiFormer:
    """BiFormer-B: depths 4-4-18-4, widths 96-192-384-768 (56.8 M params, 84.3 % ImageNet top-1)."""
    args = dict(_RELEASED, depth=(4, 4, 18, 4), embed_dim=(96, 192, 384, 768), qk_dims=(96, 192, 384, 768))
    return _create("biformer_base", BiFormer, pretrained, args, kwargs)


@register_model
def biformer_stl(pretrained: bool = False, **kwargs: Any) -> BiFormerSTL:
    """BiFormer-STL: Swin-T layout with routing attention (28.4 M params, 82.7 % ImageNet top-1)."""
    args = dict(
        depth=(2, 2, 6, 2),
        embed_dim=(96, 192, 384, 768),
        mlp_ratios=(4, 4, 4, 4),
        head_dim=32,
        n_wins=(7, 7, 7, 7),
        topks=(1, 4, 16, -2),
        side_dwconv=5,
    )
    return _create("biformer_stl", BiFormerSTL, pretrained, args, kwargs)
