"""Example inputs that fit a model's InputSpec, for smoke runs and verification."""

from __future__ import annotations

import torch

from .specs import InputSpec


def example_input(spec: InputSpec, batch_size: int = 1, seed: int = 0) -> torch.Tensor:
    """A deterministic random batch shaped as ``spec`` says (images in N(0, 1), tokens uniform)."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, *spec.shape)
    if spec.kind == "tokens":
        if spec.vocab_size is None:
            raise ValueError("a tokens InputSpec needs vocab_size")
        return torch.randint(0, spec.vocab_size, shape, generator=generator)
    if spec.kind in ("image", "tensor"):
        return torch.randn(shape, generator=generator)
    raise ValueError(f"unknown input kind {spec.kind!r}; expected 'image', 'tensor' or 'tokens'")
