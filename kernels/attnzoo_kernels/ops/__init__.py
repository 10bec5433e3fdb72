"""Every attention op of attnzoo-kernels, each in its own folder with its reference beside it."""

from __future__ import annotations

import importlib

from ..dispatch import Op, ops

# Op folders, imported so that each registers its Op with the dispatcher.
OP_MODULES = ("softmax", "relative", "routing", "agent", "linear", "sparse", "rotary", "moh")


def all_ops() -> dict[str, Op]:
    """Import every op folder and return the ops by name."""
    for module in OP_MODULES:
        importlib.import_module(f"{__name__}.{module}")
    return ops()
