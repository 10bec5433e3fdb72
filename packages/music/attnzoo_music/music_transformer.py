"""Music Transformer (Huang et al., ICLR 2019): a decoder-only Transformer with relative self-attention.

Paper: "Music Transformer: Generating Music with Long-Term Structure", arXiv:1809.04281.
Reference implementation read: tensorflow/tensor2tensor, ``common_attention.py``
(``dot_product_self_attention_relative_v2``).

Each layer is pre-norm (tensor2tensor's ``layer_preprocess_sequence="n"``): ``x + Attn(LN(x))``,
then ``x + FFN(LN(x))`` with a ReLU feed-forward. Attention is either

* ``position="relative"``: relative self-attention through ``attnzoo_kernels``'
  ``relative_attention`` op (the skewing trick), with a learned table of ``max_relative_position``
  left distances per head and no absolute position signal; or
* ``position="absolute"``: causal softmax attention with the sinusoidal timing signal added to the
  embeddings, the paper's baseline.

Token embeddings are scaled by ``sqrt(dim)`` before the (optional) timing signal, as tensor2tensor's
symbol modality does. The output projection is separate from the embedding.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .configs import MODEL_CONFIGS
from .tokenizer import VOCAB_SIZE

__all__ = [
    "MusicTransformer",
    "RelativeSelfAttention",
    "music_transformer_bach",
    "music_transformer_bach_absolute",
    "pretrained_configs",
    "sinusoidal_timing_signal",
]


def sinusoidal_timing_signal(length: int, dim: int, *, device=None, dtype=torch.float32) -> Tensor:
    """tensor2tensor's ``get_timing_signal_1d``: sines in the first half of the channels, cosines in the second."""
    half = dim // 2
    position = torch.arange(length, device=device, dtype=torch.float64)
    log_increment = math.log(1.0e4) / max(half - 1, 1)
    inverse = torch.exp(torch.arange(half, device=device, dtype=torch.float64) * -log_increment)
    angles = position[:, None] * inverse[None, :]
    signal = torch.cat([angles.sin(), angles.cos()], dim=1)
    return F.pad(signal, (0, dim % 2)).to(dtype)


class RelativeSelfAttention(nn.Module):
    """Causal multi-head self-attention; relative (learned per-head distance table) or plain."""

    def __init__(self, dim: int, num_heads: int, max_relative_position: int | None, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        if max_relative_position is not None and max_relative_position < 1:
            raise ValueError(f"max_relative_position must be >= 1; got {max_relative_position}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.max_relative_position = max_relative_position
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout
        if max_relative_position is not None:
            # Row r embeds the distance max_relative_position - 1 - r (tensor2tensor's left embeddings).
            self.rel_emb = nn.Parameter(
                torch.randn(num_heads, max_relative_position, self.head_dim) * self.head_dim**-0.5
            )
        else:
            self.register_parameter("rel_emb", None)

    def forward(self, x: Tensor) -> Tensor:
        B, L, C = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.rel_emb is not None:
            from attnzoo_kernels.ops.relative import relative_attention

            out = relative_attention(q, k, v, self.rel_emb, causal=True)
        else:
            from attnzoo_kernels.ops.softmax import softmax_attention

            out = softmax_attention(q, k, v, causal=True)
        out = out.transpose(1, 2).reshape(B, L, C)
        return F.dropout(self.proj(out), self.dropout, self.training)


class DecoderLayer(nn.Module):
    """Pre-norm self-attention and ReLU feed-forward, each with a residual."""

    def __init__(
        self, dim: int, num_heads: int, ffn_dim: int, max_relative_position: int | None, dropout: float
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = RelativeSelfAttention(dim, num_heads, max_relative_position, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, dim))
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + F.dropout(self.ffn(self.norm2(x)), self.dropout, self.training)


class MusicTransformer(nn.Module):
    """Decoder-only Transformer over a token vocabulary; ``forward(tokens) -> logits (B, L, V)``.

    ``position`` is ``"relative"`` (Music Transformer) or ``"absolute"`` (sinusoidal baseline).
    ``seq_len`` is the training context; the relative model also runs longer sequences (distances
    past ``max_relative_position`` share the zero embedding).
    """

    def __init__(
        self,
        vocab_size: int = VOCAB_SIZE,
        dim: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        ffn_dim: int = 512,
        seq_len: int = 256,
        position: str = "relative",
        max_relative_position: int | None = None,
        dropout: float = 0.1,
    ):
        super().__init__()
        if position not in ("relative", "absolute"):
            raise ValueError(f"position must be 'relative' or 'absolute'; got {position!r}")
        self.vocab_size = vocab_size
        self.dim = dim
        self.seq_len = seq_len
        self.position = position
        self.max_relative_position = (max_relative_position or seq_len) if position == "relative" else None
        self.embed = nn.Embedding(vocab_size, dim)
        self.layers = nn.ModuleList(
            DecoderLayer(dim, num_heads, ffn_dim, self.max_relative_position, dropout) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)
        self.dropout = dropout
        nn.init.normal_(self.embed.weight, std=dim**-0.5)

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (batch, length); got shape {tuple(tokens.shape)}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(f"token ids must lie in 0..{self.vocab_size - 1}")
        x = self.embed(tokens) * math.sqrt(self.dim)
        if self.position == "absolute":
            x = x + sinusoidal_timing_signal(tokens.shape[1], self.dim, device=x.device, dtype=x.dtype)
        x = F.dropout(x, self.dropout, self.training)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x))


def pretrained_configs() -> dict[str, dict[str, Any]]:
    """The builders' configurations by model name."""
    return {name: dict(config) for name, config in MODEL_CONFIGS.items()}


def music_transformer_bach(**config: Any) -> MusicTransformer:
    """Music Transformer, small: 4 layers, width 128, 4 heads, relative attention over 256 distances."""
    return MusicTransformer(**{**pretrained_configs()["music-transformer-bach"], **config})


def music_transformer_bach_absolute(**config: Any) -> MusicTransformer:
    """The same network with sinusoidal absolute positions instead of relative attention."""
    return MusicTransformer(**{**pretrained_configs()["music-transformer-bach-absolute"], **config})
