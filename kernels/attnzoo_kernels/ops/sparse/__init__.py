"""Gather-sparse attention: each query (block) attends to its selected key blocks or spans.

``sparse_attention(q, k, v, block_indices, *, block_size, query_block_size=1, causal=False, scale=None)``
``span_attention(q, k, v, span_starts, span_lengths, *, max_span, query_block_size=1, causal=False, scale=None)``

One primitive (span gather) serves SEA's estimated top-k mask, Superlinear's span attention, DHSA's
chunk budget and ActQKV's retrieved KV blocks; see docs/kernels/sparse.md.
"""

from __future__ import annotations

import math

import torch

from ...dispatch import Op
from .gather import span_attention_gather, sparse_attention_gather
from .naive import span_attention_reference, sparse_attention_reference

__all__ = [
    "make_inputs",
    "make_span_inputs",
    "span_attention",
    "span_attention_reference",
    "sparse_attention",
    "sparse_attention_reference",
]

sparse_attention = Op(
    "sparse_attention",
    reference=sparse_attention_reference,
    doc="Softmax attention restricted to per-query(-block) selected key blocks (-1 = padding).",
)
sparse_attention.register(
    "gather", sparse_attention_gather, priority=20, compile_note="traced by torch.compile"
)

span_attention = Op(
    "span_attention",
    reference=span_attention_reference,
    doc="Softmax attention restricted to per-query(-block) key spans (start, length).",
)
span_attention.register("gather", span_attention_gather, priority=20, compile_note="traced by torch.compile")


def random_block_selection(
    length: int,
    *,
    block_size: int,
    query_block_size: int,
    selected: int,
    heads: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Causal block selection (1, heads, groups, selected): each query block keeps its own diagonal
    key block plus random earlier ones, -1 where fewer exist."""
    groups = math.ceil(length / query_block_size)
    blocks = math.ceil(length / block_size)
    scores = torch.rand(1, heads, groups, blocks, generator=generator)
    last_key = (torch.arange(groups) * query_block_size + query_block_size - 1).clamp(max=length - 1)
    diagonal = (last_key // block_size).view(1, 1, groups, 1)
    block_ids = torch.arange(blocks).view(1, 1, 1, blocks)
    scores = scores.masked_fill(block_ids > diagonal, -1.0).masked_fill(block_ids == diagonal, 2.0)
    top, index = scores.topk(min(selected, blocks), dim=-1)
    return torch.where(top >= 0, index, -1)


def make_inputs(
    length: int,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    requires_grad: bool = False,
) -> tuple[tuple, dict]:
    """DHSA/NSA-like causal block selection: 4 heads, D=64, blocks of 64, 8 key blocks per query block."""
    gen = torch.Generator().manual_seed(length)
    q, k, v = (torch.randn(1, 4, length, 64, generator=gen, dtype=dtype) for _ in range(3))
    q, k, v = (t.to(device).requires_grad_(requires_grad) for t in (q, k, v))
    indices = random_block_selection(
        length, block_size=64, query_block_size=64, selected=8, heads=4, generator=gen
    )
    return (q, k, v, indices.to(device)), {"block_size": 64, "query_block_size": 64, "causal": True}


def make_span_inputs(
    length: int,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    requires_grad: bool = False,
) -> tuple[tuple, dict]:
    """Superlinear-like span attention: per query, 4 spans of up to 32 keys at random earlier starts."""
    gen = torch.Generator().manual_seed(length)
    q, k, v = (torch.randn(1, 4, length, 64, generator=gen, dtype=dtype) for _ in range(3))
    q, k, v = (t.to(device).requires_grad_(requires_grad) for t in (q, k, v))
    position = torch.arange(length).view(1, 1, length, 1)
    starts = (torch.rand(1, 4, length, 4, generator=gen) * (position + 1)).long()
    starts[..., 0] = (position[..., 0] - 31).clamp(min=0)  # the local span ending at the query
    lengths = torch.randint(1, 33, (1, 4, length, 4), generator=gen)
    lengths[..., 0] = 32
    return (q, k, v, starts.to(device), lengths.to(device)), {"max_span": 32, "causal": True}


sparse_attention.make_inputs = make_inputs
span_attention.make_inputs = make_span_inputs
