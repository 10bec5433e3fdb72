"""``attnzoo convert``: an official checkpoint in, a verified safetensors release folder out.

The folder holds ``model.safetensors``, ``model.safetensors.sha256`` (``sha256sum`` format),
``config.json`` (model, config, versions, where the weights came from) and ``README.md``
(the Hub model card from :func:`attnzoo_tools.card.render_card`).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import attnzoo
import torch
from attnzoo.checkpoints import PICKLE_SUFFIXES, read_safetensors, unwrap_state_dict
from attnzoo.discovery import registry
from attnzoo.errors import CorruptWeightsError, StateDictMismatchError, ZooError
from attnzoo.loading import build, check_state_dict, convert_checkpoint, tied_aliases
from attnzoo.registry import info, resolve
from attnzoo.specs import ModelSpec
from attnzoo.weights import sha256_of
from torch import nn

from .card import render_card
from .unpickle import RefusedPickleError, restricted_load

__all__ = [
    "CONFIG_FILE",
    "CARD_FILE",
    "SHA_FILE",
    "WEIGHTS_FILE",
    "ConvertResult",
    "SourceCheckpoint",
    "UnsafeCheckpointError",
    "convert",
    "converted_model",
    "read_release",
    "read_source",
    "target_config",
]

WEIGHTS_FILE = "model.safetensors"
SHA_FILE = "model.safetensors.sha256"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
RELEASE_FILES = (WEIGHTS_FILE, SHA_FILE, CONFIG_FILE, CARD_FILE)

READER_SAFETENSORS = "safetensors"
READER_WEIGHTS_ONLY = "torch.load(weights_only=True)"
READER_RESTRICTED = "restricted unpickler"


class UnsafeCheckpointError(ZooError):
    """A pickled checkpoint asks to run code that the restricted unpickler does not allow."""


@dataclass
class SourceCheckpoint:
    """A raw official checkpoint and how it was opened."""

    path: Path
    obj: Any
    reader: str
    stand_ins: list[str] = field(default_factory=list)


@dataclass
class ConvertResult:
    """What ``convert`` wrote."""

    out_dir: Path
    sha256: str
    tensors: int
    parameters: int
    reader: str
    stand_ins: list[str]
    config: dict[str, Any]


def _console():
    from rich.console import Console

    return Console(stderr=True)


@contextmanager
def _step(progress: Any, description: str, total: float | None = None) -> Iterator[Any]:
    """One progress line per step; ``advance(n)`` moves its bar, and leaving the block completes it."""
    task = progress.add_task(description, total=total)
    yield lambda amount: progress.advance(task, amount)
    progress.update(task, completed=total if total is not None else 1, total=total or 1)


def _progress(console: Any):
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
    )


def read_source(path: str | Path) -> SourceCheckpoint:
    """Open an official checkpoint: safetensors, or a pickle through ``weights_only=True``.

    Only when ``weights_only=True`` refuses the pickle does this fall back to the restricted
    unpickler (:mod:`attnzoo_tools.unpickle`); a pickle that asks it to call anything off
    its allow-list raises :class:`UnsafeCheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise CorruptWeightsError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        return SourceCheckpoint(path, read_safetensors(path), READER_SAFETENSORS)
    if path.suffix not in PICKLE_SUFFIXES:
        raise CorruptWeightsError(
            f"{path}: unknown checkpoint format {path.suffix!r}; expected .safetensors or one of {PICKLE_SUFFIXES}"
        )
    try:
        return SourceCheckpoint(
            path, torch.load(path, map_location="cpu", weights_only=True), READER_WEIGHTS_ONLY
        )
    except pickle.UnpicklingError:
        pass  # objects beyond tensors: try the allow-list below
    except Exception as exc:  # torch's readers raise KeyError, RuntimeError, EOFError... on damaged files
        raise CorruptWeightsError(
            f"{path} cannot be read as a PyTorch checkpoint (truncated?): {exc!r}"
        ) from exc
    try:
        obj, stand_ins = restricted_load(path)
    except RefusedPickleError as exc:
        raise UnsafeCheckpointError(f"{path}: {exc}") from exc
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, AttributeError, TypeError) as exc:
        raise CorruptWeightsError(f"{path} cannot be read even by the restricted unpickler: {exc!r}") from exc
    return SourceCheckpoint(path, obj, READER_RESTRICTED, stand_ins)


def target_config(
    spec: ModelSpec, tag: str | None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The builder config for these weights: the spec's, the tag's weight entry's, then ``overrides``."""
    config = dict(spec.config)
    entry = next((w for w in spec.weights if w.tag == tag), None) if tag else None
    if entry is not None:
        config.update(entry.config)
    config.update(overrides or {})
    return config


def _state_from(spec: ModelSpec, obj: Any) -> dict[str, torch.Tensor]:
    if spec.family in registry().converters:
        return dict(convert_checkpoint(spec, obj))
    # No converter: the checkpoint must already be in the zoo's layout (checked strictly below).
    return unwrap_state_dict(obj)


def converted_model(
    spec: ModelSpec, obj: Any, config: Mapping[str, Any], *, keep_dtype: bool = False
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Map ``obj`` through the family's converter and load it strictly into a model built on meta.

    Floating tensors are cast to the dtype of the model's own tensor unless ``keep_dtype``.
    Returns the loaded model (eval mode) and the state dict to store, in which tied
    parameters appear once (the zoo's loader fills in the other names).
    """
    state = _state_from(spec, obj)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise StateDictMismatchError(f"the converter returned non-tensors for {bad[:8]}")
    model = build(spec, config, on_meta=True)
    aliases = tied_aliases(model)  # before assign=True, which gives each name a Parameter of its own
    expected = model.state_dict()
    for key, value in state.items():
        value = value.detach().to("cpu")
        reference = expected.get(key)
        if (
            not keep_dtype
            and reference is not None
            and value.is_floating_point()
            and reference.is_floating_point()
            and value.dtype != reference.dtype
        ):
            value = value.to(reference.dtype)
        state[key] = value
    check_state_dict(model, state, spec.name)
    model.load_state_dict(state, strict=True, assign=True)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    left = [k for k, p in model.named_parameters(remove_duplicate=False) if p.device.type == "meta"]
    if left:
        raise StateDictMismatchError(
            f"{spec.name}: parameters left without weights after loading: {left[:8]}"
        )
    model.eval()
    stored = {k: v for k, v in state.items() if k not in aliases}
    return model, stored


def _unshared(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors, each with storage of its own (safetensors refuses shared memory)."""
    seen: set[int] = set()
    result = {}
    for key, value in state.items():
        value = value.contiguous()
        pointer = value.untyped_storage().data_ptr()
        if pointer in seen or value.untyped_storage().nbytes() != value.numel() * value.element_size():
            value = value.clone()
        seen.add(value.untyped_storage().data_ptr())
        result[key] = value
    return result


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _prepare_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ZooError(f"{out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    present = sorted(p.name for p in out_dir.iterdir())
    if present and not overwrite:
        raise ZooError(
            f"{out_dir} is not empty ({', '.join(present[:5])}); pass --overwrite to replace a release"
        )
    others = [p for p in present if p.endswith(".safetensors") and p != WEIGHTS_FILE]
    if others:
        raise ZooError(
            f"{out_dir} holds other safetensors files {others}; a release folder holds exactly one"
        )


def tools_version() -> str:
    try:
        return metadata.version("attnzoo-tools")
    except metadata.PackageNotFoundError:
        return "unknown"


def convert(
    name: str,
    source: str | Path,
    out_dir: str | Path,
    *,
    config_overrides: Mapping[str, Any] | None = None,
    tag: str | None = None,
    keep_dtype: bool = False,
    overwrite: bool = False,
    console: Any = None,
) -> ConvertResult:
    """Convert ``source`` for model ``name`` (``name.tag`` allowed) into a release folder ``out_dir``.

    ``tag`` names the weights when ``name`` carries none; with neither, the spec's first
    weight entry's tag is recorded (``attnzoo publish --tag`` can still set one).
    """
    from safetensors.torch import save_file

    spec, name_tag = resolve(name)
    if name_tag and tag and name_tag != tag:
        raise ZooError(f"{name} names tag {name_tag!r} but --tag says {tag!r}; give one")
    tag = name_tag or tag or (spec.weights[0].tag if spec.weights else None)
    entry = next((w for w in spec.weights if w.tag == tag), None)
    config = target_config(spec, tag, config_overrides)
    source, out_dir = Path(source), Path(out_dir)
    if not source.is_file():
        raise CorruptWeightsError(f"checkpoint {source} does not exist")
    _prepare_dir(out_dir, overwrite)
    console = console or _console()

    with _progress(console) as progress:
        size = source.stat().st_size
        with _step(progress, f"hashing {source.name}", total=size) as advance:
            source_sha = sha256_of(source, advance)
        with _step(progress, f"reading {source.name}"):
            checkpoint = read_source(source)
        with _step(progress, f"converting and loading strictly into {spec.name}"):
            model, state = converted_model(spec, checkpoint.obj, config, keep_dtype=keep_dtype)
        with _step(progress, f"writing {WEIGHTS_FILE}"):
            save_file(
                _unshared(state),
                str(out_dir / WEIGHTS_FILE),
                metadata={"format": "pt", "attnzoo_model": spec.name},
            )
        written = (out_dir / WEIGHTS_FILE).stat().st_size
        with _step(progress, f"hashing {WEIGHTS_FILE}", total=written) as advance:
            sha = sha256_of(out_dir / WEIGHTS_FILE, advance)

    parameters = sum(p.numel() for p in model.parameters())
    card = info(spec.name)
    origin = (
        entry.origin
        if entry is not None
        else f"converted from {source.name}" + (f" ({spec.paper.code_url})" if spec.paper.code_url else "")
    )
    source_record = {
        "file": source.name,
        "sha256": source_sha,
        "bytes": size,
        "reader": checkpoint.reader,
        "stand_ins": checkpoint.stand_ins,
    }
    record = {
        "model": spec.name,
        "tag": tag,
        "family": spec.family,
        "task": spec.task,
        "config": _jsonable(config),
        "config_overrides": _jsonable({k: v for k, v in config.items() if spec.config.get(k, object()) != v}),
        "keep_dtype": keep_dtype,
        "license": entry.license if entry is not None else spec.license,
        "origin": origin,
        "metrics": _jsonable(dict(entry.metrics)) if entry is not None else {},
        "package": card.package,
        "package_version": card.version,
        "zoo_version": attnzoo.__version__,
        "tools_version": tools_version(),
        "source": source_record,
        "weights": {
            "file": WEIGHTS_FILE,
            "sha256": sha,
            "bytes": written,
            "tensors": len(state),
            "parameters": parameters,
            "dtypes": sorted({str(v.dtype).removeprefix("torch.") for v in state.values()}),
        },
    }
    (out_dir / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
    (out_dir / SHA_FILE).write_text(f"{sha}  {WEIGHTS_FILE}\n")
    (out_dir / CARD_FILE).write_text(render_card(card, sha256=sha, source=source_record, tag=tag))
    return ConvertResult(
        out_dir, sha, len(state), parameters, checkpoint.reader, checkpoint.stand_ins, config
    )


def read_release(out_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a release folder, after checking the weights against its sha256."""
    out_dir = Path(out_dir)
    weights = out_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise CorruptWeightsError(f"{out_dir} has no {WEIGHTS_FILE}; write it with `attnzoo convert`")
    config_path = out_dir / CONFIG_FILE
    if not config_path.is_file():
        raise CorruptWeightsError(f"{out_dir} has no {CONFIG_FILE}; write the folder with `attnzoo convert`")
    record = json.loads(config_path.read_text())
    from attnzoo.errors import HashMismatchError

    actual = sha256_of(weights)
    pinned = {record.get("weights", {}).get("sha256")}
    if (out_dir / SHA_FILE).is_file():
        pinned.add((out_dir / SHA_FILE).read_text().split()[0])
    pinned.discard(None)
    if pinned != {actual}:
        raise HashMismatchError(
            f"{weights} has sha256 {actual}, but the folder records {sorted(pinned)}; "
            f"it changed after `attnzoo convert`. Convert again."
        )
    return record
