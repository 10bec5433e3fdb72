"""Relative-position self-attention (Shaw et al. 2018) with the Music Transformer's skewing trick.

``relative_attention(q, k, v, rel_emb, *, causal=True, scale=None, backend="auto")``

* ``q, k``: ``(B, H, L, D)``; ``v``: ``(B, H, L, Dv)``; self-attention, so one length ``L``.
* ``rel_emb``: ``(P, D)`` shared by the heads or ``(H, P, D)`` per head. Entry ``r`` embeds the
  offset ``j - i = r - (R - 1)`` with ``R = max_relative_position``: ``P = R`` when causal (offsets
  ``-(R-1)..0``, tensor2tensor's ``get_relative_embeddings_left`` order), ``P = 2R - 1`` otherwise.
  Offsets outside the table contribute zero.
* ``logits[i, j] = scale * (q_i . k_j + q_i . E[j - i])``, ``scale`` defaults to ``1/sqrt(D)``;
  keys after the query are masked when ``causal``. Returns ``(B, H, L, Dv)``.

Backends: ``reference`` (builds the ``(L, L, D)`` relative tensor), ``skew`` (the paper's skew on the
full logits, autograd), ``torch`` (the skew on query blocks with a recomputing backward:
``O(L D)`` extra memory for the relative term, ``O(block * L)`` workspace) and ``triton`` (a fused
forward-only kernel that reads the skewed table rows directly; inference on CUDA).
"""

from __future__ import annotations

import torch

from ...dispatch import Op, triton_available, triton_devices
from . import naive
from .chunked import relative_attention_chunked, relative_attention_skew

__all__ = ["relative_attention", "make_inputs"]


def _reasons(q, k, v, rel_emb, *, causal=True, scale=None, **extra):
    reasons = []
    try:
        naive.check_relative_inputs(q, k, v, rel_emb, causal)
    except ValueError as exc:
        reasons.append(str(exc))
    return reasons


relative_attention = Op(
    "relative_attention",
    reference=naive.relative_attention_reference,
    doc=__doc__,
)
relative_attention.register(
    "torch",
    relative_attention_chunked,
    priority=10,
    check=_reasons,
    compile_note="custom autograd.Function with Python block loop; traced by torch.compile",
)
relative_attention.register(
    "skew",
    relative_attention_skew,
    priority=5,
    check=_reasons,
    compile_note="plain PyTorch; traced by torch.compile",
)


def _relative_attention_triton(*args, **kwargs):
    from .triton import relative_attention_triton

    return relative_attention_triton(*args, **kwargs)


relative_attention.register(
    "triton",
    _relative_attention_triton,
    # Below the PyTorch paths until it has been checked on a GPU: opt-in with backend="triton".
    priority=1,
    check=_reasons,
    available=triton_available,
    devices=triton_devices(),
    dtypes=(torch.float16, torch.bfloat16, torch.float32),
    supports_grad=False,
    interpreted_on_cpu=True,
    compile_note="Triton kernel: a graph break under torch.compile (forward only)",
)


def make_inputs(
    length: int, *, device="cpu", dtype=torch.float32, requires_grad: bool = False
) -> tuple[tuple, dict]:
    """Representative benchmark inputs: batch 1, 4 heads of depth 32, a shared table of ``length`` distances."""
    generator = torch.Generator(device="cpu").manual_seed(length)
    batch, heads, depth = 1, 4, 32

    def draw(*shape):
        tensor = torch.randn(*shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
        return tensor.requires_grad_(requires_grad)

    q, k, v = (draw(batch, heads, length, depth) for _ in range(3))
    rel_emb = draw(length, depth) * depth**-0.5 if not requires_grad else draw(length, depth)
    return (q, k, v, rel_emb), {"causal": True}
