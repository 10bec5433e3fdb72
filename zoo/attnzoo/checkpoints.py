"""Reading weight files: the zoo's safetensors, and official checkpoints for converters.

Nothing here unpickles arbitrary objects: pickled checkpoints are opened with
``torch.load(weights_only=True)`` only. Maintainers who meet a checkpoint that needs
more use ``attnzoo convert``, whose restricted unpickler lives in attnzoo-tools.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import CorruptWeightsError

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def read_safetensors(path: str | Path, device: str = "cpu") -> dict[str, Any]:
    """All tensors of a safetensors file, with a clear error for truncated or foreign files."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CorruptWeightsError(f"{path} is not a readable safetensors file (truncated?): {exc}") from exc
    # CPU kernels take other code paths on unaligned memory and round differently (~1e-7);
    # fresh copies make a loaded model bit-identical to one loaded with torch.load.
    return {k: v.clone() if v.data_ptr() % 64 else v for k, v in state.items()}


def read_checkpoint(path: str | Path) -> Any:
    """The raw object of an official checkpoint (.pth/.pt/.bin/.ckpt or .safetensors)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if path.suffix not in PICKLE_SUFFIXES:
        raise CorruptWeightsError(
            f"{path}: unknown checkpoint format {path.suffix!r}; expected .safetensors or one of {PICKLE_SUFFIXES}"
        )
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CorruptWeightsError(
            f"{path} holds objects beyond tensors, which the zoo will not unpickle; convert it once with "
            f"`attnzoo convert NAME {path} -o DIR` and load DIR instead ({exc})"
        ) from exc
    except Exception as exc:  # torch's readers raise KeyError, RuntimeError, EOFError... on damaged files
        raise CorruptWeightsError(
            f"{path} cannot be read as a PyTorch checkpoint (truncated?): {exc!r}"
        ) from exc


def unwrap_state_dict(obj: Any, keys: Sequence[str] = ("state_dict", "model", "module")) -> dict[str, Any]:
    """The flat tensor dict inside a checkpoint, following the first wrapper key present at each level."""
    import torch

    current = obj
    for _ in range(4):
        if (
            isinstance(current, Mapping)
            and current
            and all(isinstance(v, torch.Tensor) for v in current.values())
        ):
            return dict(current)
        if not isinstance(current, Mapping):
            break
        inner = next((current[k] for k in keys if k in current), None)
        if inner is None:
            break
        current = inner
    found = sorted(current.keys())[:10] if isinstance(current, Mapping) else type(current).__name__
    raise CorruptWeightsError(f"no state dict found under keys {list(keys)}; top level holds {found}")
