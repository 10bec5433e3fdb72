"""Agent attention as two torch SDPA calls (agent aggregation, then agent broadcast).

Each stage is plain softmax attention with the bias as an additive mask, so SDPA's fused kernels
serve it and neither (n x Lk) nor (Lq x n) score matrix is kept for backward by autograd glue.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from .naive import check_agent_inputs


def agent_attention_sdpa(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    agent: Tensor,
    *,
    aggregation_bias: Tensor | None = None,
    broadcast_bias: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """Same contract as :func:`agent_attention_reference`."""
    check_agent_inputs(q, k, v, agent)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    mask1 = None if aggregation_bias is None else aggregation_bias.to(q.dtype)
    mask2 = None if broadcast_bias is None else broadcast_bias.to(q.dtype)
    agent_values = F.scaled_dot_product_attention(agent, k, v, attn_mask=mask1, scale=scale)
    return F.scaled_dot_product_attention(q, agent, agent_values, attn_mask=mask2, scale=scale)
