"""attnzoo: attention models from recent papers, loadable by name.

>>> import attnzoo as zoo
>>> zoo.list_models("biformer-*")
>>> model = zoo.load("biformer-s")

Listing and describing models is torch-free; ``load`` imports torch and the model's code.
"""

from __future__ import annotations

from .errors import (
    ConverterError,
    CorruptWeightsError,
    HashMismatchError,
    StateDictMismatchError,
    UnknownModelError,
    WeightsUnavailableError,
    ZooError,
)
from .hookspecs import hookimpl
from .registry import info, list_models, plugins
from .specs import ConverterSpec, HubFile, InputSpec, ModelCard, ModelSpec, Paper, PluginInfo, WeightEntry

__version__ = "0.1.0"


def load(name, pretrained=True, weights=None, device=None, dtype=None, **config_overrides):
    """Build a model by name, with pretrained weights unless ``pretrained=False``.

    ``name`` may carry a weight tag (``biformer-s.in1k``). ``weights`` is a local
    safetensors file or folder, or an official checkpoint which the family's converter
    maps. ``config_overrides`` go to the model's builder (``num_classes=10``).
    """
    from .loading import load as _load

    return _load(name, pretrained=pretrained, weights=weights, device=device, dtype=dtype, **config_overrides)


__all__ = [
    "ConverterError",
    "ConverterSpec",
    "CorruptWeightsError",
    "HashMismatchError",
    "HubFile",
    "InputSpec",
    "ModelCard",
    "ModelSpec",
    "Paper",
    "PluginInfo",
    "StateDictMismatchError",
    "UnknownModelError",
    "WeightEntry",
    "WeightsUnavailableError",
    "ZooError",
    "hookimpl",
    "info",
    "list_models",
    "load",
    "plugins",
]
