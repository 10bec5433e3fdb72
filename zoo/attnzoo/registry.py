"""Name resolution and the torch-free half of the public API: list_models, info, plugins."""

from __future__ import annotations

import difflib
import fnmatch

from .discovery import registry
from .errors import UnknownModelError
from .specs import ModelCard, ModelSpec, PluginInfo


def resolve(name: str) -> tuple[ModelSpec, str | None]:
    """Split ``name[.tag]`` and find its spec through names and aliases."""
    reg = registry()
    base, tag = name, None
    if base not in reg.models and base not in reg.aliases and "." in name:
        base, tag = name.rsplit(".", 1)
    key = reg.aliases.get(base, base)
    if key not in reg.models:
        known = list(reg.models) + list(reg.aliases)
        close = difflib.get_close_matches(base, known, n=8, cutoff=0.5)
        close = list(dict.fromkeys(reg.aliases.get(c, c) for c in close))[:5]  # one entry per model
        hint = f"; closest matches: {', '.join(close)}" if close else ""
        raise UnknownModelError(f"unknown model {name!r}{hint} (attnzoo list shows every model)")
    return reg.models[key], tag


def list_models(
    pattern: str = "*",
    *,
    task: str | None = None,
    package: str | None = None,
    pretrained: bool | None = None,
) -> list[str]:
    """Names of the registered models matching a glob ``pattern`` and the given filters, sorted."""
    reg = registry()
    names = []
    for name, spec in reg.models.items():
        if not any(fnmatch.fnmatchcase(n, pattern) for n in (name, *spec.aliases)):
            continue
        if task is not None and spec.task != task:
            continue
        if package is not None and package not in (reg.owner[name].distribution, reg.owner[name].name):
            continue
        if pretrained is not None and any(w.published for w in spec.weights) != pretrained:
            continue
        names.append(name)
    return sorted(names)


def info(name: str) -> ModelCard:
    """The ModelCard of a model (paper, licence, config, weights, input, metrics)."""
    spec, tag = resolve(name)
    if tag is not None and all(w.tag != tag for w in spec.weights):
        tags = ", ".join(w.tag for w in spec.weights) or "none"
        raise UnknownModelError(f"{spec.name} has no weights tagged {tag!r}; it has: {tags}")
    owner = registry().owner[spec.name]
    return ModelCard(
        name=spec.name,
        aliases=spec.aliases,
        package=owner.distribution,
        version=owner.version,
        family=spec.family,
        task=spec.task,
        paper=spec.paper,
        license=spec.license,
        config=dict(spec.config),
        weights=spec.weights,
        input=spec.input,
        metrics=dict(spec.metrics),
        description=spec.description,
        builder=spec.builder,
        integrations=dict(spec.integrations),
    )


def plugins() -> list[PluginInfo]:
    """Every discovered plugin with its status (ok, failed, conflict) and error."""
    return list(registry().plugins)
