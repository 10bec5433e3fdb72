"""Discovers plugins through entry points and collects what they register, one plugin at a time.

A plugin that fails to import or to register, or that claims a name another plugin
already holds, is recorded with its reason and left out; it never breaks the zoo.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from . import hookspecs
from .specs import ConverterSpec, ModelSpec, PluginInfo

ENTRY_POINT_GROUP = "attnzoo"


@dataclass
class Registry:
    """Every model, alias and converter the plugins registered, with their owners."""

    models: dict[str, ModelSpec] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    owner: dict[str, PluginInfo] = field(default_factory=dict)
    converters: dict[str, ConverterSpec] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    manager: pluggy.PluginManager | None = None


_lock = threading.Lock()
_registry: Registry | None = None
_extra_plugins: list[tuple[str, object]] = []


def add_plugin(name: str, plugin: object) -> None:
    """Register an in-process plugin object (for notebooks and tests); takes effect on the next scan."""
    _extra_plugins.append((name, plugin))
    reset()


def reset() -> None:
    """Forget the scanned registry, so the next call scans the entry points again."""
    global _registry
    with _lock:
        _registry = None


def registry() -> Registry:
    """The registry, scanning the installed plugins on first use."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = _scan()
        return _registry


def _entry_points() -> list[metadata.EntryPoint]:
    seen: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        seen.setdefault(ep.name, ep)  # a distribution found twice on sys.path counts once
    return sorted(seen.values(), key=lambda ep: (ep.dist.name if ep.dist else "", ep.name))


def _scan() -> Registry:
    reg = Registry(manager=pluggy.PluginManager(ENTRY_POINT_GROUP))
    reg.manager.add_hookspecs(hookspecs)
    candidates: list[tuple[str, str, str, object]] = []
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        try:
            candidates.append((ep.name, dist, version, ep.load()))
        except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's, not ours
            reg.plugins.append(PluginInfo(ep.name, dist, version, "failed", f"import failed: {exc!r}"))
    for name, plugin in _extra_plugins:
        candidates.append((name, f"<in-process {name}>", "0", plugin))

    for name, dist, version, module in candidates:
        reg.plugins.append(_register_one(reg, name, dist, version, module))
    return reg


def _register_one(reg: Registry, name: str, dist: str, version: str, module: object) -> PluginInfo:
    try:
        reg.manager.register(module, name=name)
    except Exception as exc:  # noqa: BLE001
        return PluginInfo(name, dist, version, "failed", f"not a valid plugin: {exc!r}")
    info = PluginInfo(name, dist, version, "ok")
    models: list[ModelSpec] = []
    converters: list[ConverterSpec] = []
    try:
        for impl in reg.manager.hook.register_models.get_hookimpls():
            if impl.plugin is module:
                impl.function(register=models.append)
        for impl in reg.manager.hook.register_converters.get_hookimpls():
            if impl.plugin is module:
                impl.function(register=converters.append)
    except Exception as exc:  # noqa: BLE001
        reg.manager.unregister(module)
        return PluginInfo(name, dist, version, "failed", f"registration failed: {exc!r}")

    conflicts = []
    for spec in models:
        for key in (spec.name, *spec.aliases):
            holder = reg.owner.get(reg.aliases.get(key, key))
            if holder is not None or key in reg.aliases:
                conflicts.append(f"{key!r} is already registered by {holder.distribution if holder else '?'}")
    if conflicts:
        reg.manager.unregister(module)
        detail = "; ".join(conflicts)
        return PluginInfo(name, dist, version, "conflict", f"{dist}: {detail}")

    for spec in models:
        reg.models[spec.name] = spec
        for alias in spec.aliases:
            reg.aliases[alias] = spec.name
    for conv in converters:
        reg.converters[conv.family] = conv
    info = PluginInfo(name, dist, version, "ok", None, tuple(s.name for s in models))
    for spec in models:
        reg.owner[spec.name] = info
    return info
