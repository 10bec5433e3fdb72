"""A restricted unpickler for official checkpoints that ``torch.load(weights_only=True)`` refuses.

Only ``attnzoo convert`` and ``attnzoo verify --source`` use it, and only after
``weights_only=True`` has failed; the zoo's load path never does.

What the pickle may name is split three ways:

* a named allow-list of harmless callables (:data:`ALLOWED`): containers, torch's tensor
  rebuild functions, dtypes, sizes, devices, numpy scalars and arrays, pure paths;
* torch storages, which ``torch.load`` itself resolves to inert storage types;
* everything else becomes an inert *stand-in class* (:class:`StandIn`). Instances are
  created without running any of the original code (the pickle's ``NEWOBJ`` / ``BUILD``
  opcodes only record arguments and state), so Ultralytics-style checkpoints that pickle
  whole ``nn.Module`` objects open without importing the classes they name. Calling a
  stand-in, which is what a ``REDUCE`` of ``os.system`` or ``builtins.eval`` amounts to, is
  refused with :class:`RefusedPickleError`.

Module stand-ins keep their ``_parameters``, ``_buffers`` and ``_modules`` in ``__dict__``, as
``nn.Module`` does, and offer a read-only ``state_dict()``, so a converter written for
``ckpt["model"].state_dict()`` works on either.
"""

from __future__ import annotations

import _compat_pickle
import pickle
import types
import zipfile
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import torch

__all__ = [
    "ALLOWED",
    "RefusedPickleError",
    "StandIn",
    "module_state_dict",
    "restricted_load",
]


class RefusedPickleError(pickle.UnpicklingError):
    """The pickle asks to run code outside the allow-list."""


class _StandInMeta(type):
    """Metaclass of stand-ins: building one through the pickle works, calling one is refused."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise RefusedPickleError(
            f"the checkpoint asks to call {cls.__standin_module__}.{cls.__standin_name__}"
            f"{_short_args(args)}, which is not on the restricted unpickler's allow-list; refusing to load it. "
            f"A weights file never needs to call this; the file may be malicious."
        )

    def __repr__(cls) -> str:
        return f"<stand-in class {cls.__standin_module__}.{cls.__standin_name__}>"


class StandIn(metaclass=_StandInMeta):
    """An inert record of an object of a class the unpickler would not import.

    ``__dict__`` holds the pickled state when it was a dict; other state lands in
    ``standin_state``, constructor arguments in ``standin_args``, and dict or list
    items (for pickled dict/list subclasses) in ``standin_items`` / ``standin_list``.
    """

    __standin_module__ = "?"
    __standin_name__ = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> StandIn:
        obj = object.__new__(cls)
        object.__setattr__(obj, "standin_args", args)
        return obj

    def __setstate__(self, state: Any) -> None:
        slots = None
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            state, slots = state
        if isinstance(state, dict):
            self.__dict__.update({k: v for k, v in state.items() if isinstance(k, str)})
        elif state is not None:
            self.__dict__["standin_state"] = state
        if slots:
            self.__dict__.update({k: v for k, v in slots.items() if isinstance(k, str)})

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("standin_items", {})[key] = value

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("standin_list", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("standin_list", []).extend(values)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors of a pickled ``nn.Module``, keyed as ``nn.Module.state_dict`` keys them."""
        return module_state_dict(self)

    def __repr__(self) -> str:
        cls = type(self)
        return f"<stand-in for {cls.__standin_module__}.{cls.__standin_name__}>"


def _short_args(args: tuple) -> str:
    text = repr(args)
    return text if len(text) <= 80 else text[:77] + "...)"


def stand_in_class(module: str, name: str) -> type[StandIn]:
    """A fresh stand-in class recording that the pickle named ``module.name``."""
    return _StandInMeta(
        name,
        (StandIn,),
        {"__standin_module__": module, "__standin_name__": name, "__module__": "attnzoo_tools.unpickle"},
    )


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` for protocol 0/1 pickles, limited to plain objects."""
    if base is not object:
        raise RefusedPickleError(
            f"the checkpoint rebuilds {cls!r} from base {base!r}; only plain objects (base object) are allowed"
        )
    if not (isinstance(cls, type) and issubclass(cls, StandIn)):
        raise RefusedPickleError(
            f"the checkpoint rebuilds {cls!r} through copyreg; only stand-ins are allowed"
        )
    return cls.__new__(cls)


def _newobj(cls: Any, *args: Any) -> Any:
    if not (isinstance(cls, type) and (issubclass(cls, StandIn) or cls in _ALLOWED_TYPES)):
        raise RefusedPickleError(f"the checkpoint creates {cls!r} through copyreg.__newobj__; not allowed")
    return cls.__new__(cls, *args)


def _rebuild_from_type_v2(func: Callable, new_type: Any, args: tuple, state: Any) -> Any:
    """torch's tensor-subclass rebuild, limited to plain tensors and parameters."""
    if new_type not in (torch.Tensor, torch.nn.Parameter):
        raise RefusedPickleError(
            f"the checkpoint rebuilds a tensor as {new_type!r}; only plain tensors are allowed"
        )
    return torch._tensor._rebuild_from_type_v2(func, new_type, args, state)


def _allowed() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("collections", "Counter"): Counter,
        ("collections", "defaultdict"): defaultdict,
        ("builtins", "object"): object,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "complex"): complex,
        ("builtins", "slice"): slice,
        ("builtins", "range"): range,
        ("_codecs", "encode"): _codecs_encode,
        ("copyreg", "_reconstructor"): _reconstructor,
        ("copy_reg", "_reconstructor"): _reconstructor,
        ("copyreg", "__newobj__"): _newobj,
        ("types", "SimpleNamespace"): types.SimpleNamespace,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("torch", "Tensor"): torch.Tensor,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("torch.serialization", "_get_layout"): torch.serialization._get_layout,
    }
    for name in (
        "_rebuild_tensor",
        "_rebuild_tensor_v2",
        "_rebuild_tensor_v3",
        "_rebuild_parameter",
        "_rebuild_parameter_with_state",
        "_rebuild_meta_tensor_no_storage",
        "_rebuild_device_tensor_from_cpu_tensor",
    ):
        if hasattr(torch._utils, name):
            allowed[("torch._utils", name)] = getattr(torch._utils, name)
    for name in dir(torch):
        value = getattr(torch, name, None)
        if isinstance(value, torch.dtype):
            allowed[("torch", name)] = value
    # Pure paths only: a pickled PosixPath comes back as a PurePosixPath, which cannot touch the disk.
    for module in ("pathlib", "pathlib._local"):
        for name in ("Path", "PosixPath", "PurePath", "PurePosixPath"):
            allowed[(module, name)] = PurePosixPath
        for name in ("WindowsPath", "PureWindowsPath"):
            allowed[(module, name)] = PureWindowsPath
    try:
        import numpy as np
    except ImportError:  # numpy is optional; without it numpy objects are refused like any call
        return allowed
    multiarray = (getattr(np, "_core", None) or np.core).multiarray
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(core, "scalar")] = multiarray.scalar
        allowed[(core, "_reconstruct")] = multiarray._reconstruct
    allowed[("numpy", "dtype")] = np.dtype
    allowed[("numpy", "ndarray")] = np.ndarray
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "BoolDType"):
        if hasattr(np.dtypes, name):
            allowed[("numpy.dtypes", name)] = getattr(np.dtypes, name)
    return allowed


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (latin1 only)."""
    if encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise RefusedPickleError(
            f"the checkpoint encodes bytes as {encoding!r}; only latin1/utf-8 are allowed"
        )
    return text.encode(encoding)


ALLOWED: dict[tuple[str, str], Any] = _allowed()
"""``(module, name)`` pairs the restricted unpickler resolves to real objects."""

_ALLOWED_TYPES = {value for value in ALLOWED.values() if isinstance(value, type)}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves allow-listed names and turns every other name into an inert stand-in class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stand_ins: dict[tuple[str, str], type[StandIn]] = {}

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 0-2 pickles spell Python 2 names (__builtin__.set); map them as pickle itself does.
        key = (module, name)
        if key in _compat_pickle.NAME_MAPPING:
            key = _compat_pickle.NAME_MAPPING[key]
        elif module in _compat_pickle.IMPORT_MAPPING:
            key = (_compat_pickle.IMPORT_MAPPING[module], name)
        if key in ALLOWED:
            return ALLOWED[key]
        if key not in self.stand_ins:
            self.stand_ins[key] = stand_in_class(module, name)
        return self.stand_ins[key]


def _pickle_module(stand_ins: dict[tuple[str, str], type[StandIn]]) -> types.SimpleNamespace:
    """What ``torch.load(pickle_module=...)`` needs: an ``Unpickler`` class and a ``load`` function."""

    class Unpickler(RestrictedUnpickler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.stand_ins = stand_ins

    def load(file: Any, **kwargs: Any) -> Any:
        return Unpickler(file, **kwargs).load()

    return types.SimpleNamespace(__name__=__name__, Unpickler=Unpickler, load=load)


def restricted_load(path: str | Path) -> tuple[Any, list[str]]:
    """Open a pickled checkpoint with the restricted unpickler.

    Returns the loaded object (tensors on CPU) and the sorted names of the classes that
    became stand-ins. Raises :class:`RefusedPickleError` when the pickle tries to call
    anything off the allow-list.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith("constants.pkl") for name in archive.namelist()):
                # torch.load hands TorchScript archives to torch.jit.load, which runs the archive's code
                raise RefusedPickleError(
                    f"{path} is a TorchScript archive; the restricted unpickler does not load TorchScript. "
                    f"Extract its state dict with torch.jit.load on a machine you trust."
                )
    stand_ins: dict[tuple[str, str], type[StandIn]] = {}
    module = _pickle_module(stand_ins)
    obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=module)
    return obj, sorted(f"{m}.{n}" for m, n in stand_ins)


def module_state_dict(module: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """``nn.Module.state_dict()`` of a stand-in (or real) module, read from its recorded state.

    Follows ``_modules``; takes every parameter and every buffer not listed in
    ``_non_persistent_buffers_set``; skips ``None`` entries, as PyTorch does.
    """
    state: dict[str, torch.Tensor] = {}
    attributes = module.__dict__
    if "_parameters" not in attributes and "_modules" not in attributes:
        raise TypeError(f"{module!r} does not look like a pickled nn.Module (no _parameters/_modules)")
    for key, value in (attributes.get("_parameters") or {}).items():
        if value is not None:
            state[prefix + key] = value.detach()
    skip = attributes.get("_non_persistent_buffers_set") or set()
    for key, value in (attributes.get("_buffers") or {}).items():
        if value is not None and key not in skip:
            state[prefix + key] = value.detach()
    for key, child in (attributes.get("_modules") or {}).items():
        if child is not None:
            state.update(module_state_dict(child, prefix + key + "."))
    return state
