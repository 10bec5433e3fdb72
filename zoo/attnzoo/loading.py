"""``attnzoo.load``: build a model by name and materialise its weights straight from safetensors.

Pretrained models are built with their parameters on the meta device (no random
initialisation is computed), checked key by key against the weights, and only then
assigned, so a failure leaves no half-loaded model behind.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoints import PICKLE_SUFFIXES, read_checkpoint, read_safetensors
from .discovery import registry
from .errors import ConverterError, StateDictMismatchError, WeightsUnavailableError, ZooError
from .registry import resolve
from .specs import ModelSpec
from .weights import fetch


def import_object(target: str) -> Any:
    """Import ``"package.module:attribute"``."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Create every ``nn.Parameter`` on the meta device while leaving buffers real.

    Parameters are overwritten by the weights anyway, so their initialisation is
    skipped; buffers (index tables, masks) are often absent from checkpoints and are
    computed for real.
    """
    original = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None and param.device.type != "meta":
            meta = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
            module._parameters[name] = meta

    nn.Module.register_parameter = register_on_meta
    try:
        with _SkipInitOnMeta():
            yield
    finally:
        nn.Module.register_parameter = original


class _SkipInitOnMeta(torch.overrides.TorchFunctionMode):
    """Return at once from in-place initialisers applied to meta tensors.

    On meta tensors they compute nothing, but some (``trunc_normal_``'s ``erfinv_``) still
    cost milliseconds each through PyTorch's Python reference implementations.
    """

    INITIALISERS = frozenset(
        "uniform_ normal_ erfinv_ mul_ add_ sub_ div_ clamp_ fill_ zero_ copy_ exponential_ "
        "bernoulli_ random_ trunc_ fmod_ orthogonal_ sqrt_".split()
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if (
            getattr(func, "__name__", "") in self.INITIALISERS
            and args
            and isinstance(args[0], torch.Tensor)
            and args[0].is_meta
        ):
            return args[0]
        return func(*args, **(kwargs or {}))


def build(spec: ModelSpec, config: Mapping[str, Any], *, on_meta: bool) -> nn.Module:
    """Call the spec's builder with ``config``, with parameters on meta when weights will follow."""
    builder = import_object(spec.builder)
    try:
        if not on_meta:
            return builder(**config)
        with parameters_on_meta():
            return builder(**config)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        raise ZooError(
            f"{spec.name} does not take that config key ({exc}); its default config is {dict(spec.config)}"
        ) from exc


def tied_aliases(model: nn.Module) -> dict[str, str]:
    """Keys of tied parameters mapped to the first key of the same tensor (checkpoints store one)."""
    first: dict[int, str] = {}
    aliases = {}
    for key, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            aliases[key] = first[id(param)]
        else:
            first[id(param)] = key
    return aliases


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    """Raise StateDictMismatchError listing missing, unexpected and mis-shaped tensors.

    Tied parameters stored once are filled in under their other keys.
    """
    expected = model.state_dict()
    for key, source in tied_aliases(model).items():
        if key not in state and source in state:
            state[key] = state[source]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{key}: model {tuple(expected[key].shape)} vs weights {tuple(state[key].shape)}"
        for key in sorted(set(expected) & set(state))
        if tuple(expected[key].shape) != tuple(state[key].shape)
    ]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if items:
            shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
            parts.append(f"{label}: {shown}")
    hint = ""
    if len(missing) + len(mismatched) > len(expected) // 2:
        hint = " These weights look like a different architecture or variant."
    raise StateDictMismatchError(
        f"weights do not fit {name}: " + "; ".join(parts) + "." + hint,
        missing=missing,
        unexpected=unexpected,
        mismatched=mismatched,
    )


def convert_checkpoint(spec: ModelSpec, checkpoint: Any) -> dict[str, torch.Tensor]:
    """Map a raw official checkpoint to the zoo's state dict through the family's converter."""
    converter = registry().converters.get(spec.family)
    if converter is None:
        raise ConverterError(
            f"no converter is registered for family {spec.family!r} ({spec.name}); "
            f"pass a safetensors file written by the zoo instead"
        )
    try:
        return import_object(converter.function)(checkpoint, spec)
    except Exception as exc:
        raise ConverterError(f"converter {converter.function} failed on this checkpoint: {exc}") from exc


def read_weights(spec: ModelSpec, weights: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a local file or folder; official checkpoints pass through the converter."""
    path = Path(weights)
    if path.is_dir():
        candidates = sorted(path.glob("*.safetensors"))
        if len(candidates) != 1:
            raise WeightsUnavailableError(
                f"{path} must hold exactly one .safetensors file (found {len(candidates)})"
            )
        path = candidates[0]
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if path.suffix in PICKLE_SUFFIXES:
        return convert_checkpoint(spec, read_checkpoint(path))
    raise WeightsUnavailableError(
        f"{path}: expected a .safetensors file or an official checkpoint {PICKLE_SUFFIXES}"
    )


def load(
    name: str,
    pretrained: bool = True,
    weights: str | Path | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **config_overrides: Any,
) -> nn.Module:
    """See :func:`attnzoo.load`."""
    spec, tag = resolve(name)
    config = dict(spec.config)
    state = None
    if weights is not None:
        state = read_weights(spec, weights)
    elif pretrained:
        if not spec.weights:
            raise WeightsUnavailableError(
                f"{spec.name} has no pretrained weights; load it with pretrained=False for random init, "
                f"or pass weights=PATH"
            )
        entry = _weight_entry(spec, tag)
        config.update(entry.config)
        state = read_safetensors(fetch(entry, spec.name))
    elif tag is not None:
        config.update(_weight_entry(spec, tag).config)  # random init, but the tagged variant's config
    config.update(config_overrides)

    model = build(spec, config, on_meta=state is not None)
    if state is not None:
        state = {k: _placed(v, device, dtype) for k, v in state.items()}
        check_state_dict(model, state, spec.name)
        aliases = tied_aliases(model)
        model.load_state_dict(state, strict=True, assign=True)
        _retie(model, aliases)
        _check_nothing_left_on_meta(model, spec.name)
    model.eval()
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model


def _retie(model: nn.Module, aliases: dict[str, str]) -> None:
    """assign=True gave each tied name its own Parameter; point them back at one object."""
    for key, source in aliases.items():
        owner, _, leaf = key.rpartition(".")
        model.get_submodule(owner)._parameters[leaf] = model.get_parameter(source)


def _placed(tensor: torch.Tensor, device, dtype) -> torch.Tensor:
    """Move a loaded tensor before assignment, so the model is never held twice."""
    if dtype is not None and tensor.is_floating_point():
        tensor = tensor.to(dtype)
    return tensor.to(device) if device is not None else tensor


def _weight_entry(spec: ModelSpec, tag: str | None):
    try:
        return spec.weight(tag)
    except LookupError as exc:
        raise WeightsUnavailableError(str(exc)) from exc


def _check_nothing_left_on_meta(model: nn.Module, name: str) -> None:
    """A parameter still on meta was never registered under a state-dict key the weights could fill."""
    left = [key for key, p in model.named_parameters(remove_duplicate=False) if p.device.type == "meta"]
    if left:
        raise StateDictMismatchError(f"{name}: parameters left without weights after loading: {left[:8]}")
