"""Reference of Agent Attention (Han et al., arXiv 2312.08873), written from the paper's equations.

With agent tokens A (n of them; the paper pools them from Q, here they are an input)::

    V_A = softmax(A Kᵀ · scale + B1) V          # agent aggregation (n x Dv)
    O   = softmax(Q Aᵀ · scale + B2) V_A        # agent broadcast   (Lq x Dv)

As in the official ``AgentAttention`` (agent_swin.py / agent_pvt.py) the same ``scale = head_dim**-0.5``
multiplies both score matrices, B1 is the "position bias" added to the agent-to-key scores and B2
the "agent bias" added to the query-to-agent scores; both are computed by the model (interpolated
and summed bias tables) and passed in here. The depthwise-convolution term of the paper is a model
layer, not part of this op.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def check_agent_inputs(q: Tensor, k: Tensor, v: Tensor, agent: Tensor) -> None:
    """Raise ``ValueError`` naming the constraint when the shapes do not fit agent attention."""
    for name, t in (("q", q), ("k", k), ("v", v), ("agent", agent)):
        if t.dim() != 4:
            raise ValueError(
                f"agent_attention: {name} must be 4-D (batch, heads, length, dim); got {tuple(t.shape)}"
            )
    if k.shape[:3] != v.shape[:3]:
        raise ValueError(
            f"agent_attention: k and v must share (batch, heads, length); got {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if not (q.shape[:2] == k.shape[:2] == agent.shape[:2]):
        raise ValueError(
            "agent_attention: q, k, agent must share (batch, heads); "
            f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(agent.shape)}"
        )
    if not (q.shape[-1] == k.shape[-1] == agent.shape[-1]):
        raise ValueError("agent_attention: q, k and agent must share head_dim")
    if len({q.dtype, k.dtype, v.dtype, agent.dtype}) != 1 or not q.is_floating_point():
        raise ValueError("agent_attention: q, k, v, agent must share one floating-point dtype")


def agent_attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    agent: Tensor,
    *,
    aggregation_bias: Tensor | None = None,
    broadcast_bias: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """Agent attention, the ground truth.

    Args:
        q: (B, H, Lq, D) queries.
        k: (B, H, Lk, D) keys; v: (B, H, Lk, Dv) values.
        agent: (B, H, n, D) agent tokens.
        aggregation_bias: B1, added to A Kᵀ·scale, broadcastable to (B, H, n, Lk).
        broadcast_bias: B2, added to Q Aᵀ·scale, broadcastable to (B, H, Lq, n).
        scale: defaults to 1/sqrt(D).

    Returns:
        (B, H, Lq, Dv).
    """
    check_agent_inputs(q, k, v, agent)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    agent_scores = torch.matmul(agent * scale, k.transpose(-1, -2))
    if aggregation_bias is not None:
        agent_scores = agent_scores + aggregation_bias
    agent_values = torch.matmul(torch.softmax(agent_scores, dim=-1), v)
    query_scores = torch.matmul(q * scale, agent.transpose(-1, -2))
    if broadcast_bias is not None:
        query_scores = query_scores + broadcast_bias
    return torch.matmul(torch.softmax(query_scores, dim=-1), agent_values)
