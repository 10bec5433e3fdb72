"""attnzoo-spatial: QuatRoPE and IGRE, 3-D object relations in LLaMA-family attention.

``attnzoo_spatial.patch(model, compat="official"|"paper")`` adds QuatRoPE object tokens to a Hugging Face
LLaMA/Vicuna model; object positions go to ``forward``/``generate`` as ``object_positions=``.
Importing this package stays torch-free.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["is_patched", "patch", "unpatch"]


def patch(model, compat="official", **options):
    """Add QuatRoPE to every LLaMA-style attention layer of ``model`` (see ``attnzoo_spatial.quatrope.patch``)."""
    from .quatrope import patch as _patch

    return _patch(model, compat, **options)


def unpatch(model):
    """Undo ``patch`` (see ``attnzoo_spatial.quatrope.unpatch``)."""
    from .quatrope import unpatch as _unpatch

    return _unpatch(model)


def is_patched(model):
    """Whether ``patch`` touched ``model``."""
    from .quatrope import is_patched as _is_patched

    return _is_patched(model)
