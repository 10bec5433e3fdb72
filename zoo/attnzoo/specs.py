"""What plugins declare: plain, torch-free records of models, weights and converters.

Everything here is cheap to build at import time so that listing and describing
models never imports torch or a plugin's model code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Paper",
    "HubFile",
    "WeightEntry",
    "InputSpec",
    "ModelSpec",
    "ConverterSpec",
    "ModelCard",
    "PluginInfo",
]


@dataclass(frozen=True)
class Paper:
    """The publication a model comes from."""

    title: str
    arxiv: str | None = None
    code_url: str | None = None


@dataclass(frozen=True)
class HubFile:
    """A file in a Hugging Face Hub model repo, pinned to a revision (a commit id once published)."""

    repo_id: str
    filename: str = "model.safetensors"
    revision: str = "main"


@dataclass(frozen=True)
class WeightEntry:
    """One set of pretrained weights for a model, selected as ``name.tag``.

    Exactly one of ``hub`` and ``package_file`` says where the safetensors file lives.
    ``package_file`` is ``"import_package:relative/path.safetensors"``, a file shipped
    inside a plugin distribution. ``sha256`` is ``None`` only for weights that are
    announced but not yet published: they are listed, but ``load`` refuses them.
    """

    tag: str
    license: str
    origin: str
    sha256: str | None = None
    hub: HubFile | None = None
    package_file: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        if (self.hub is None) == (self.package_file is None):
            raise ValueError(f"weight entry {self.tag!r} needs exactly one of hub= and package_file=")

    @property
    def published(self) -> bool:
        """Whether the entry pins a file that can be loaded and verified."""
        return self.sha256 is not None

    @property
    def source(self) -> str:
        if self.hub is not None:
            return f"hf://{self.hub.repo_id}@{self.hub.revision}/{self.hub.filename}"
        return f"package://{self.package_file}"


@dataclass(frozen=True)
class InputSpec:
    """What a model's forward takes, enough to build a fitting example input.

    ``kind`` is ``"image"`` or ``"tensor"`` (float tensor of ``(batch, *shape)``) or ``"tokens"``
    (int64 tensor of ``(batch, *shape)`` with values below ``vocab_size``).
    ``preprocess`` holds what a data pipeline needs (mean, std, interpolation, crop_pct).
    """

    kind: str
    shape: tuple[int, ...]
    vocab_size: int | None = None
    preprocess: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """A model a plugin offers. ``builder`` is ``"module:function"``, imported only on load.

    The builder is called as ``builder(**config)`` with the spec's ``config`` updated by the
    weight entry's config and then by the caller's overrides, and returns an ``nn.Module``.
    Models sharing a ``family`` share a checkpoint converter. ``integrations`` names the model
    in other libraries as ``"module:name"``, e.g. ``{"timm": "attnzoo_vision.biformer:biformer_small"}``
    (importing the module registers the name there).
    """

    name: str
    builder: str
    family: str
    task: str
    paper: Paper
    license: str
    aliases: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    weights: tuple[WeightEntry, ...] = ()
    input: InputSpec | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    integrations: Mapping[str, str] = field(default_factory=dict)

    def weight(self, tag: str | None) -> WeightEntry:
        """The weight entry for ``tag``, or the first (default) one when ``tag`` is None."""
        if not self.weights:
            raise LookupError(f"{self.name} has no pretrained weights")
        if tag is None:
            return self.weights[0]
        for entry in self.weights:
            if entry.tag == tag:
                return entry
        tags = ", ".join(e.tag for e in self.weights)
        raise LookupError(f"{self.name} has no weights tagged {tag!r}; it has: {tags}")


@dataclass(frozen=True)
class ConverterSpec:
    """Turns a family's official checkpoint into the zoo's state dict.

    ``function`` is ``"module:function"`` taking the raw loaded checkpoint (usually a dict,
    perhaps wrapped as ``{'model': ...}``) and the ModelSpec, returning a flat
    ``dict[str, Tensor]`` that loads strictly into the zoo's model.
    """

    family: str
    function: str
    description: str = ""


@dataclass(frozen=True)
class ModelCard:
    """Everything the zoo knows about a model, as returned by ``attnzoo.info``."""

    name: str
    aliases: tuple[str, ...]
    package: str
    version: str
    family: str
    task: str
    paper: Paper
    license: str
    config: Mapping[str, Any]
    weights: tuple[WeightEntry, ...]
    input: InputSpec | None
    metrics: Mapping[str, Any]
    description: str
    builder: str
    integrations: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the card."""
        data = dataclasses.asdict(self)
        for entry, raw in zip(self.weights, data["weights"]):
            raw["source"] = entry.source
        return data


@dataclass(frozen=True)
class PluginInfo:
    """A discovered plugin and how its registration went: status is ok, failed or conflict."""

    name: str
    distribution: str
    version: str
    status: str
    error: str | None = None
    models: tuple[str, ...] = ()
