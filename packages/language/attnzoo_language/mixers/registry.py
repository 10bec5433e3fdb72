"""The token-mixer registry and what every mixer receives besides the hidden states."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["MixerContext", "TokenMixer", "register_mixer", "mixer_registry", "build_mixer"]

_REGISTRY: dict[str, type[TokenMixer]] = {}


@dataclass
class MixerContext:
    """Per-forward information shared by all layers.

    ``cache`` is a transformers ``Cache`` (or None); each mixer keeps its own state in layer
    ``layer_idx`` of it through ``cache.update(keys, values, layer_idx)``, so that
    ``cache.get_seq_length()`` counts the tokens seen. ``attn_bias`` is an additive float mask
    ``(batch, 1, new, past + new)`` with ``-inf`` where a query must not look, built only when a
    plain causal mask does not say it (padding, or several new tokens after a cached prefix).
    ``input_embeddings`` is the model's layer-0 input (token + position embedding) for mixers that
    take queries and keys from it; ``past_length`` is the number of cached tokens.
    """

    cache: Any = None
    attn_bias: torch.Tensor | None = None
    past_length: int = 0
    position_ids: torch.Tensor | None = None
    input_embeddings: torch.Tensor | None = None

    def causal(self, new_tokens: int) -> bool:
        """Whether the attention call must apply its own causal mask (no explicit bias given)."""
        return self.attn_bias is None and new_tokens > 1

    def keep_mask(self, new_tokens: int, total_tokens: int, device: torch.device) -> torch.Tensor:
        """A boolean ``(batch or 1, 1, new, total)`` mask of the (query, key) pairs that may interact."""
        if self.attn_bias is not None:
            return self.attn_bias > float("-inf")
        query_pos = torch.arange(total_tokens - new_tokens, total_tokens, device=device)
        key_pos = torch.arange(total_tokens, device=device)
        return (key_pos[None, :] <= query_pos[:, None])[None, None]


class TokenMixer(nn.Module):
    """Base class of the token mixers: ``forward(x, ctx) -> (y, aux_loss or None)``.

    ``x`` is the normalised hidden state ``(batch, new, d)``; ``y`` has the same shape and is added
    to the residual stream by the block. ``aux_loss`` is a scalar auxiliary loss (MoH's load balance).
    """

    name: str = ""
    layer_idx: int = 0

    def forward(
        self, hidden_states: torch.Tensor, ctx: MixerContext
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


def register_mixer(name: str) -> Callable[[type[TokenMixer]], type[TokenMixer]]:
    """Class decorator adding a mixer to the registry under ``name``."""

    def wrap(cls: type[TokenMixer]) -> type[TokenMixer]:
        if name in _REGISTRY:
            raise ValueError(
                f"mixer {name!r} is registered twice ({_REGISTRY[name].__name__}, {cls.__name__})"
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def mixer_registry() -> dict[str, type[TokenMixer]]:
    """A copy of the registry: mixer name to class."""
    return dict(_REGISTRY)


def build_mixer(name: str, config: Any, layer_idx: int) -> TokenMixer:
    """Build mixer ``name`` for layer ``layer_idx`` of a :class:`MixerLMConfig`."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown mixer {name!r}; registered: {sorted(_REGISTRY)}")
    mixer = _REGISTRY[name](config, layer_idx)
    mixer.layer_idx = layer_idx
    return mixer
