"""Softmax attention with masks, additive bias, causal masking and GQA.

``softmax_attention(q, k, v, *, attn_mask=None, bias=None, causal=False, scale=None, backend="auto")``

Backends: ``sdpa`` (torch SDPA, every device and dtype, training), ``flex`` (flex attention through
torch.compile, CUDA only: eager flex on CPU is a slow, forward-only loop, so the dispatcher does not
offer it there; ``softmax_attention_flex`` can still be called directly) and ``reference``.
"""

from __future__ import annotations

import torch

from ...dispatch import Op
from .flex import flex_reasons, flex_unavailable, softmax_attention_flex
from .naive import softmax_attention_reference
from .sdpa import softmax_attention_sdpa

__all__ = ["make_inputs", "softmax_attention", "softmax_attention_reference"]

softmax_attention = Op(
    "softmax_attention",
    reference=softmax_attention_reference,
    doc="softmax(Q Kᵀ·scale + bias + mask) V with boolean/additive masks, causal masking and GQA.",
)
softmax_attention.register(
    "sdpa",
    softmax_attention_sdpa,
    priority=20,
    compile_note="traced by torch.compile (SDPA is a supported op)",
)
softmax_attention.register(
    "flex",
    softmax_attention_flex,
    priority=10,
    devices=("cuda",),
    dtypes=(torch.float16, torch.bfloat16, torch.float32),
    check=flex_reasons,
    available=flex_unavailable,
    compile_note="calls torch.compile(flex_attention) itself (CUDA only)",
)


def make_inputs(
    length: int,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    requires_grad: bool = False,
) -> tuple[tuple, dict]:
    """Causal GQA self-attention at ``length`` tokens: B=1, 8 query heads over 2 KV heads, D=64."""
    gen = torch.Generator().manual_seed(length)
    q = torch.randn(1, 8, length, 64, generator=gen, dtype=dtype).to(device)
    k = torch.randn(1, 2, length, 64, generator=gen, dtype=dtype).to(device)
    v = torch.randn(1, 2, length, 64, generator=gen, dtype=dtype).to(device)
    for t in (q, k, v):
        t.requires_grad_(requires_grad)
    return (q, k, v), {"causal": True}
