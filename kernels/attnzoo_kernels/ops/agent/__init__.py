"""Agent attention (arXiv 2312.08873): two softmax stages through n agent tokens.

``agent_attention(q, k, v, agent, *, aggregation_bias=None, broadcast_bias=None, scale=None, backend="auto")``
"""

from __future__ import annotations

import torch

from ...dispatch import Op
from .naive import agent_attention_reference
from .sdpa import agent_attention_sdpa

__all__ = ["agent_attention", "agent_attention_reference", "make_inputs"]

agent_attention = Op(
    "agent_attention",
    reference=agent_attention_reference,
    doc="O = softmax(Q Aᵀ·s + B2) · softmax(A Kᵀ·s + B1) V through n agent tokens A.",
)
agent_attention.register(
    "sdpa",
    agent_attention_sdpa,
    priority=20,
    compile_note="traced by torch.compile (two SDPA calls)",
)


def make_inputs(
    length: int,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    requires_grad: bool = False,
    agents: int = 49,
) -> tuple[tuple, dict]:
    """Agent-Swin/PVT-like stage: B=1, 4 heads, D=32, 49 agents, both position biases given."""
    gen = torch.Generator().manual_seed(length)
    q, k, v = (torch.randn(1, 4, length, 32, generator=gen, dtype=dtype) for _ in range(3))
    agent = torch.randn(1, 4, agents, 32, generator=gen, dtype=dtype)
    bias1 = 0.1 * torch.randn(1, 4, agents, length, generator=gen, dtype=dtype)
    bias2 = 0.1 * torch.randn(1, 4, length, agents, generator=gen, dtype=dtype)
    tensors = [t.to(device).requires_grad_(requires_grad) for t in (q, k, v, agent, bias1, bias2)]
    q, k, v, agent, bias1, bias2 = tensors
    return (q, k, v, agent), {"aggregation_bias": bias1, "broadcast_bias": bias2}
