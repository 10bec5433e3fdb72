"""Torch-free model configurations, shared by the plugin (for ``attnzoo info``) and the builders."""

from __future__ import annotations

from typing import Any

from .tokenizer import VOCAB_SIZE

__all__ = ["BACH_SMALL", "MODEL_CONFIGS"]

# The small CPU recipe's architecture (``python -m attnzoo_music.train --preset cpu-small``).
BACH_SMALL: dict[str, Any] = dict(
    vocab_size=VOCAB_SIZE, dim=128, depth=4, num_heads=4, ffn_dim=512, seq_len=256, dropout=0.1
)

MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    "music-transformer-bach": dict(BACH_SMALL, position="relative", max_relative_position=256),
    "music-transformer-bach-absolute": dict(BACH_SMALL, position="absolute"),
}
