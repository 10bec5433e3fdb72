"""A small xformers-style dispatcher: each op has a float64 reference and backends that say what they serve.

An op is called as ``op(*args, backend="auto", **kwargs)``. ``"auto"`` takes the
highest-priority backend whose ``not_supported_reasons`` is empty; the reference is
always last in line. An explicit backend that cannot serve raises
``BackendNotSupported`` with every reason. ``ATTNZOO_KERNEL_BACKEND`` forces backends
for debugging: ``"reference"`` (every op) or ``"relative_attention=torch,linear_attention=triton"``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

ENV_VAR = "ATTNZOO_KERNEL_BACKEND"

ReasonsFn = Callable[..., list[str]]


class BackendNotSupported(RuntimeError):
    """The requested backend cannot serve these inputs; the message lists why."""


@dataclass
class Backend:
    """One implementation of an op and the inputs it accepts.

    ``devices`` and ``dtypes`` are checked on every tensor argument; ``check`` adds
    op-specific reasons (shapes, masks). ``available`` says why the backend cannot run
    on this machine at all (a missing package, no GPU), or returns None.
    """

    name: str
    fn: Callable[..., Any]
    priority: int
    devices: tuple[str, ...] = ("cpu", "cuda")
    dtypes: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    supports_grad: bool = True
    check: ReasonsFn | None = None
    available: Callable[[], str | None] | None = None
    compile_note: str = "traced by torch.compile"
    interpreted_on_cpu: bool = False  # a Triton kernel: CPU only through TRITON_INTERPRET, so never auto

    def unavailable_reason(self) -> str | None:
        return self.available() if self.available is not None else None

    def not_supported_reasons(self, *args: Any, **kwargs: Any) -> list[str]:
        reasons = []
        missing = self.unavailable_reason()
        if missing:
            reasons.append(missing)
        for tensor in _tensors(args, kwargs):
            if tensor.device.type not in self.devices:
                reasons.append(f"device {tensor.device.type} not in {self.devices}")
            if tensor.is_floating_point() and tensor.dtype not in self.dtypes:
                reasons.append(f"dtype {tensor.dtype} not in {[str(d) for d in self.dtypes]}")
            if not self.supports_grad and tensor.requires_grad and torch.is_grad_enabled():
                reasons.append("backward not supported (an input requires grad)")
        if self.check is not None:
            reasons.extend(self.check(*args, **kwargs))
        return sorted(set(reasons), key=reasons.index)


@dataclass
class Op:
    """A named attention primitive: its reference, its backends and the dispatch between them."""

    name: str
    reference: Callable[..., Any]
    doc: str = ""
    backends: dict[str, Backend] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # help() and IDEs show the op's real arguments, plus backend=, instead of (*args, **kwargs)
        reference_signature = inspect.signature(self.reference)
        backend_param = inspect.Parameter("backend", inspect.Parameter.KEYWORD_ONLY, default="auto")
        params = list(reference_signature.parameters.values())
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            params.append(backend_param)
        self.__signature__ = reference_signature.replace(parameters=params)
        self.__doc__ = self.doc or self.reference.__doc__
        self.register(
            "reference", self.reference, priority=-1, compile_note="plain PyTorch; traced by torch.compile"
        )
        _OPS[self.name] = self

    def register(self, name: str, fn: Callable[..., Any], priority: int, **options: Any) -> Backend:
        """Add a backend; higher ``priority`` is tried first under ``backend="auto"``."""
        backend = Backend(name=name, fn=fn, priority=priority, **options)
        self.backends[name] = backend
        return backend

    def select(self, backend: str, *args: Any, **kwargs: Any) -> Backend:
        """The backend that will run these inputs under ``backend`` (``"auto"`` or a name)."""
        backend = _forced(self.name) or backend
        if backend != "auto":
            if backend not in self.backends:
                raise BackendNotSupported(
                    f"{self.name}: unknown backend {backend!r}; known: {', '.join(self.backends)}"
                )
            chosen = self.backends[backend]
            reasons = chosen.not_supported_reasons(*args, **kwargs)
            if reasons:
                raise BackendNotSupported(
                    f"{self.name}: backend {backend!r} cannot serve these inputs: " + "; ".join(reasons)
                )
            return chosen
        on_cpu = any(t.device.type == "cpu" for t in _tensors(args, kwargs))
        for candidate in sorted(self.backends.values(), key=lambda b: -b.priority):
            if candidate.interpreted_on_cpu and on_cpu:
                continue
            if not candidate.not_supported_reasons(*args, **kwargs):
                return candidate
        return self.backends["reference"]

    def __call__(self, *args: Any, backend: str = "auto", **kwargs: Any) -> Any:
        return self.select(backend, *args, **kwargs).fn(*args, **kwargs)


_OPS: dict[str, Op] = {}


def ops() -> dict[str, Op]:
    """Every op, by name (importing ``attnzoo_kernels`` registers them all)."""
    return dict(_OPS)


def _forced(op_name: str) -> str | None:
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return None
    if "=" not in value:
        return value
    for item in value.split(","):
        key, _, name = item.partition("=")
        if key.strip() == op_name:
            return name.strip()
    return None


def _tensors(args: Iterable[Any], kwargs: dict[str, Any]) -> list[torch.Tensor]:
    return [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]


def triton_available() -> str | None:
    """None when Triton can run here (CUDA, or the CPU interpreter), else why not."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed"
    if os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available():
        return None
    return "triton needs a CUDA device (or TRITON_INTERPRET=1 for the CPU interpreter)"


def triton_devices() -> tuple[str, ...]:
    """Devices a Triton backend accepts: CUDA, plus CPU under the interpreter."""
    return ("cuda", "cpu") if os.environ.get("TRITON_INTERPRET") == "1" else ("cuda",)
