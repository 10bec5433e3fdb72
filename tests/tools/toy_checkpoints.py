"""Official-style checkpoints of the toy family, for the tools' tests."""

from __future__ import annotations

import torch


def official_toy_state(seed: int = 0, width: int = 8, num_classes: int = 3) -> dict[str, torch.Tensor]:
    """A toy checkpoint in the 'official' layout the toy converter maps (layer1/layer2 names)."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "layer1.weight": torch.randn(width, 4, generator=generator),
        "layer1.bias": torch.randn(width, generator=generator),
        "layer2.weight": torch.randn(num_classes, width, generator=generator),
        "layer2.bias": torch.randn(num_classes, generator=generator),
    }
