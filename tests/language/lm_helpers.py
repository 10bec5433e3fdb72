"""Small configurations shared by the language tests."""

from __future__ import annotations

from attnzoo_language.configuration import MIXER_NAMES, MixerLMConfig

ALL_MIXERS = MIXER_NAMES
EVERY_MIXER_SPEC = ",".join(MIXER_NAMES)


def small_config(mixers: str = "softmax", **overrides) -> MixerLMConfig:
    """A model small enough for many forward passes per test (d=32, 4 heads, 50 tokens)."""
    base = dict(
        vocab_size=50,
        hidden_size=32,
        num_attention_heads=4,
        max_position_embeddings=64,
        mixers=mixers,
        moh_shared_heads=1,
        moh_routed_heads=2,
        grassmann_reduced_dim=6,
        grassmann_windows=[1, 2, 4],
    )
    base.update(overrides)
    return MixerLMConfig(**base)
