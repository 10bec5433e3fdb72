"""Feature maps φ for kernelized linear attention, where sim(q, k) = φ(q)·φ(k).

* ``"elu"`` / :class:`EluPlusOne` — φ(x) = elu(x) + 1 (Katharopoulos et al., 2020).
* :class:`FavorPlus` — Performer's positive random features for the softmax kernel
  (Choromanski et al., 2021), with a projection matrix given or drawn from a seed.
* :class:`EcoFormerHash` — EcoFormer's kernelized binary hash codes h(x) ∈ {-1, 1}^b
  (Liu et al., arXiv 2209.09004), extended by one constant feature so that
  φ(q)·φ(k) = h(q)·h(k) + c with the bias c = b + 1 of the official code.

A map is called as ``fm(x, is_query=...)`` on (..., L, D) and returns (..., L, F). ``token_local``
says whether a token's features depend on that token alone (needed by the recurrent step form).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


class FeatureMap:
    """Base class: ``__call__(x, *, is_query) -> features``; ``token_local`` as described above."""

    name = "feature_map"
    token_local = True

    def __call__(self, x: Tensor, *, is_query: bool) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EluPlusOne(FeatureMap):
    """φ(x) = elu(x) + 1 > 0 (Katharopoulos et al.); F = D."""

    name = "elu"

    def __call__(self, x: Tensor, *, is_query: bool) -> Tensor:
        # relu(x) + exp(min(x, 0)) is elu(x) + 1 exactly (value and gradient); on CPU torch's elu
        # kernel measured 30-50x slower than these three vectorised ops.
        return torch.relu(x) + torch.exp(torch.clamp(x, max=0.0))


class FavorPlus(FeatureMap):
    """Performer FAVOR+ positive random features approximating exp(q·k / sqrt(D)).

    φ(x) = (exp(ω x̃ − |x̃|²/2 − s) + eps) / sqrt(m) with x̃ = x·D^(-1/4) and ω the rows of the
    (m, D) ``projection``. As in the official Performer code, queries are stabilised by their own
    row maximum s (a per-query factor that cancels in the normalisation); unlike it, keys use s = 0
    instead of a maximum over the whole key tensor, so every feature depends on its token alone
    (causal, chunked and recurrent forms agree exactly). The exponent of a key feature is at most
    |ω|²/2, about D/2: safe in float32 for D up to ~170, not in float16.
    """

    name = "favor+"

    def __init__(self, projection: Tensor, *, eps: float = 1e-4) -> None:
        if projection.dim() != 2:
            raise ValueError(
                f"FavorPlus: projection must be (num_features, head_dim); got {tuple(projection.shape)}"
            )
        self.projection = projection
        self.eps = eps

    @classmethod
    def random(
        cls,
        head_dim: int,
        num_features: int | None = None,
        *,
        seed: int = 0,
        orthogonal: bool = True,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        eps: float = 1e-4,
    ) -> FavorPlus:
        """Draw ω: blocks of orthogonal rows with Gaussian-norm lengths (Performer's default scaling)."""
        num_features = num_features or int(head_dim * math.log(head_dim))
        gen = torch.Generator().manual_seed(seed)
        if orthogonal:
            blocks = []
            for _ in range(math.ceil(num_features / head_dim)):
                gaussian = torch.randn(head_dim, head_dim, generator=gen, dtype=torch.float64)
                q, _ = torch.linalg.qr(gaussian)
                blocks.append(q.T)
            rows = torch.cat(blocks)[:num_features]
            norms = torch.randn(num_features, head_dim, generator=gen, dtype=torch.float64).norm(dim=1)
            projection = rows * norms[:, None]
        else:
            projection = torch.randn(num_features, head_dim, generator=gen, dtype=torch.float64)
        return cls(projection.to(device=device, dtype=dtype), eps=eps)

    def __call__(self, x: Tensor, *, is_query: bool) -> Tensor:
        if x.shape[-1] != self.projection.shape[-1]:
            raise ValueError(
                f"FavorPlus: head_dim {x.shape[-1]} does not match the projection's {self.projection.shape[-1]}"
            )
        normalizer = x.shape[-1] ** -0.25
        x = x * normalizer
        projected = torch.matmul(x, self.projection.to(x.dtype).T)
        exponent = projected - 0.5 * (x * x).sum(-1, keepdim=True)
        if is_query:
            exponent = exponent - projected.amax(-1, keepdim=True).detach()
        return (torch.exp(exponent) + self.eps) / math.sqrt(self.projection.shape[0])

    def __repr__(self) -> str:
        return f"FavorPlus(num_features={self.projection.shape[0]}, head_dim={self.projection.shape[1]})"


class _SignStraightThrough(torch.autograd.Function):
    """sign(y) forward; backward passes the gradient where |y| < 1 (EcoFormer's BinaryQuantizer)."""

    @staticmethod
    def forward(ctx, y: Tensor) -> Tensor:
        ctx.save_for_backward(y)
        return torch.sign(y)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return grad * (y.abs() < 1).to(grad.dtype)


class EcoFormerHash(FeatureMap):
    """EcoFormer's kernelized hashing with its bias term, as a feature map of size b + 1.

    Following the official ``KernelSH.forward``: x is L2-normalised, a Gaussian kernel against m
    anchors ``κ_j(x) = exp(-|x - a_j|² / (2σ))`` is centred by the kernel mean ``kernel_mean`` and
    projected by ``hash_weights`` (H, b, m); the sign gives the code h(x) ∈ {-1, 1}^b (0 where the
    projection is exactly 0). The official attention ``linear_attention_bias`` adds the constant
    c = b + 1 to every similarity h(q)·h(k), which keeps it positive; here that is the extra feature
    sqrt(c), so φ(q)·φ(k) = h(q)·h(k) + c and the usual normalisation gives
    ``O_i = Σ_j (h_i·h_j + c) v_j / Σ_j (h_i·h_j + c)``. (The official numerator adds c·v_i instead of
    c·Σ_j v_j while its denominator adds c·N; we keep the form that is a proper kernel, see the docs.)

    ``sigma`` is the kernel width σ: a float or a (H,) tensor, or None for the official choice, the
    mean squared anchor distance over the whole input per batch and head — that makes a token's code
    depend on the other tokens (``token_local`` is then False and the recurrent step refuses it).
    """

    name = "ecoformer"

    def __init__(
        self,
        anchors: Tensor,
        hash_weights: Tensor,
        kernel_mean: Tensor,
        *,
        sigma: float | Tensor | None = None,
        bias: float | None = None,
    ) -> None:
        if anchors.dim() != 3 or hash_weights.dim() != 3 or kernel_mean.dim() != 2:
            raise ValueError(
                "EcoFormerHash: anchors must be (H, m, D), hash_weights (H, b, m), kernel_mean (H, m); got "
                f"{tuple(anchors.shape)}, {tuple(hash_weights.shape)}, {tuple(kernel_mean.shape)}"
            )
        heads, m, _ = anchors.shape
        if (
            hash_weights.shape[0] != heads
            or hash_weights.shape[2] != m
            or tuple(kernel_mean.shape) != (heads, m)
        ):
            raise ValueError(
                "EcoFormerHash: anchors, hash_weights and kernel_mean disagree on heads or anchors"
            )
        self.anchors = anchors
        self.hash_weights = hash_weights
        self.kernel_mean = kernel_mean
        self.sigma = sigma
        self.bits = hash_weights.shape[1]
        self.bias = float(self.bits + 1) if bias is None else float(bias)
        if self.bias < self.bits:
            raise ValueError(f"EcoFormerHash: bias must be >= bits ({self.bits}) to keep similarities >= 0")
        self.token_local = sigma is not None

    @classmethod
    def random(
        cls,
        heads: int,
        head_dim: int,
        bits: int = 16,
        anchors: int = 20,
        *,
        seed: int = 0,
        sigma: float | None = 1.0,
        dtype: torch.dtype = torch.float32,
    ) -> EcoFormerHash:
        """Untrained random parameters (for tests and benchmarks; real ones come from KSH training)."""
        gen = torch.Generator().manual_seed(seed)
        anchor = F.normalize(
            torch.randn(heads, anchors, head_dim, generator=gen, dtype=torch.float64), dim=-1
        )
        weights = torch.randn(heads, bits, anchors, generator=gen, dtype=torch.float64)
        mean = 0.5 + 0.1 * torch.rand(heads, anchors, generator=gen, dtype=torch.float64)
        return cls(anchor.to(dtype), weights.to(dtype), mean.to(dtype), sigma=sigma)

    def codes(self, x: Tensor) -> Tensor:
        """h(x) ∈ {-1, 0, 1}^b for x (B, H, L, D) (straight-through gradient)."""
        if x.dim() != 4 or x.shape[1] != self.anchors.shape[0] or x.shape[-1] != self.anchors.shape[-1]:
            raise ValueError(
                f"EcoFormerHash: input must be (B, {self.anchors.shape[0]}, L, {self.anchors.shape[-1]}); "
                f"got {tuple(x.shape)}"
            )
        x = F.normalize(x, dim=-1)
        anchors = self.anchors.to(x.dtype)
        sq_dist = (x * x).sum(-1, keepdim=True) - 2 * torch.matmul(x, anchors.transpose(-1, -2))
        sq_dist = sq_dist + (anchors * anchors).sum(-1)[None, :, None, :]
        if self.sigma is None:
            sigma = sq_dist.mean(dim=(-1, -2), keepdim=True)
        elif isinstance(self.sigma, Tensor):
            sigma = self.sigma.to(x.dtype).reshape(1, -1, 1, 1)
        else:
            sigma = self.sigma
        kernel = torch.exp(-sq_dist / (2 * sigma)) - self.kernel_mean.to(x.dtype)[None, :, None, :]
        projected = torch.einsum("bhlm,hkm->bhlk", kernel, self.hash_weights.to(x.dtype))
        return _SignStraightThrough.apply(projected)

    def __call__(self, x: Tensor, *, is_query: bool) -> Tensor:
        h = self.codes(x)
        constant = torch.full_like(h[..., :1], math.sqrt(self.bias))
        return torch.cat([h, constant], dim=-1)

    def __repr__(self) -> str:
        return f"EcoFormerHash(bits={self.bits}, anchors={self.anchors.shape[1]}, bias={self.bias})"


_NAMED = {"elu": EluPlusOne, "elu+1": EluPlusOne}


def resolve_feature_map(feature_map: str | FeatureMap) -> FeatureMap:
    """A feature map from a name (``"elu"``) or an instance."""
    if isinstance(feature_map, FeatureMap):
        return feature_map
    if isinstance(feature_map, str) and feature_map in _NAMED:
        return _NAMED[feature_map]()
    raise ValueError(
        f"linear_attention: unknown feature_map {feature_map!r}; use 'elu' or an instance of "
        "EluPlusOne, FavorPlus or EcoFormerHash"
    )
