"""Token mixers, one file per family, each registered by name in :mod:`.registry`."""

from __future__ import annotations

from ..configuration import MIXER_NAMES
from . import deconstructed, grassmann, moh, softmax  # noqa: F401  (registration)
from .registry import MixerContext, TokenMixer, build_mixer, mixer_registry, register_mixer

if set(mixer_registry()) != set(MIXER_NAMES):
    raise RuntimeError(
        f"mixer registry {sorted(mixer_registry())} and configuration.MIXER_NAMES {sorted(MIXER_NAMES)} disagree"
    )

__all__ = ["MixerContext", "TokenMixer", "build_mixer", "mixer_registry", "register_mixer"]
