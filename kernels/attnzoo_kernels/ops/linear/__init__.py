"""Kernelized linear attention: non-causal, causal (chunked), recurrent step; pluggable feature maps.

``linear_attention(q, k, v, *, feature_map="elu", causal=False, eps=1e-6, chunk_size=64, backend="auto")``
``linear_attention_step(q_t, k_t, v_t, state=None, *, feature_map="elu", eps=1e-6) -> (out, state)``

Feature maps: ``"elu"`` (elu+1), :class:`FavorPlus` (Performer), :class:`EcoFormerHash` (EcoFormer).
Backends: ``triton`` (causal, CUDA; CPU only under TRITON_INTERPRET=1 and never auto there),
``chunked`` (PyTorch, every device) and ``reference`` (explicit L x L matrix).
"""

from __future__ import annotations

import torch

from ...dispatch import Op, triton_available, triton_devices
from .chunked import LinearAttentionState, linear_attention_chunked, linear_attention_step
from .feature_maps import EcoFormerHash, EluPlusOne, FavorPlus, FeatureMap, resolve_feature_map
from .naive import linear_attention_reference
from .triton import linear_attention_triton, triton_reasons

__all__ = [
    "EcoFormerHash",
    "EluPlusOne",
    "FavorPlus",
    "FeatureMap",
    "LinearAttentionState",
    "linear_attention",
    "linear_attention_reference",
    "linear_attention_step",
    "make_inputs",
    "resolve_feature_map",
]

linear_attention = Op(
    "linear_attention",
    reference=linear_attention_reference,
    doc="O_i = Σ_j φ(q_i)·φ(k_j) v_j / (Σ_j φ(q_i)·φ(k_j) + eps), non-causal or causal.",
)
linear_attention.register(
    "chunked",
    linear_attention_chunked,
    priority=20,
    compile_note="traced by torch.compile",
)
linear_attention.register(
    "triton",
    linear_attention_triton,
    priority=30,
    dtypes=(torch.float16, torch.bfloat16, torch.float32),
    check=triton_reasons,
    available=triton_available,
    devices=triton_devices(),
    interpreted_on_cpu=True,
    compile_note="graph break on purpose (torch.compiler.disable around the kernel launch)",
)


def make_inputs(
    length: int,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    requires_grad: bool = False,
) -> tuple[tuple, dict]:
    """Causal decoder-style linear attention: B=1, 4 heads, D=64, elu+1 features."""
    gen = torch.Generator().manual_seed(length)
    q, k, v = (torch.randn(1, 4, length, 64, generator=gen, dtype=dtype) for _ in range(3))
    q, k, v = (t.to(device).requires_grad_(requires_grad) for t in (q, k, v))
    return (q, k, v), {"causal": True, "feature_map": "elu"}
