"""Agent attention: the SDPA backend against the float64 reference, forward and backward (biases too)."""

from __future__ import annotations

import pytest
import torch
from attnzoo_kernels.ops.agent import agent_attention, agent_attention_reference, make_inputs
from attnzoo_kernels.ops.agent.sdpa import agent_attention_sdpa
from hypothesis import given
from hypothesis import strategies as st
from kernel_checks import SETTINGS, assert_matches


@st.composite
def agent_problems(draw):
    return {
        "batch": draw(st.sampled_from([1, 2])),
        "heads": draw(st.sampled_from([1, 2, 5])),
        "lq": draw(st.integers(1, 30)),
        "lk": draw(st.integers(1, 30)),
        "agents": draw(st.sampled_from([1, 4, 9])),
        "dim": draw(st.sampled_from([4, 8])),
        "dv": draw(st.sampled_from([3, 8])),
        "biases": draw(st.sampled_from(["none", "aggregation", "broadcast", "both"])),
        "scale": draw(st.sampled_from([None, 0.5])),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def build(p, dtype):
    gen = torch.Generator().manual_seed(p["seed"])
    b, h, lq, lk, n, d, dv = (p[x] for x in ("batch", "heads", "lq", "lk", "agents", "dim", "dv"))
    shapes = {"q": (b, h, lq, d), "k": (b, h, lk, d), "v": (b, h, lk, dv), "agent": (b, h, n, d)}
    tensors = {name: torch.randn(*s, generator=gen, dtype=torch.float64) for name, s in shapes.items()}
    kwargs = {"scale": p["scale"]}
    if p["biases"] in ("aggregation", "both"):
        kwargs["aggregation_bias"] = torch.randn(1, h, n, lk, generator=gen, dtype=torch.float64)
    if p["biases"] in ("broadcast", "both"):
        kwargs["broadcast_bias"] = torch.randn(b, h, lq, n, generator=gen, dtype=torch.float64)
    cotangent = torch.randn(b, h, lq, dv, generator=gen, dtype=torch.float64)

    def cast(t):
        return t.to(dtype).requires_grad_() if isinstance(t, torch.Tensor) else t

    return (
        [cast(tensors[n]) for n in ("q", "k", "v", "agent")],
        {n: cast(t) for n, t in kwargs.items()},
        cotangent,
    )


@SETTINGS
@given(p=agent_problems(), dtype=st.sampled_from([torch.float64, torch.float32]))
def test_sdpa_matches_reference(p, dtype):
    inputs, kwargs, cotangent = build(p, dtype)
    biases = [t for t in kwargs.values() if isinstance(t, torch.Tensor)]
    out = agent_attention(*inputs, backend="sdpa", **kwargs)
    grads = torch.autograd.grad(out, inputs + biases, cotangent.to(dtype))
    ref_inputs, ref_kwargs, _ = build(p, torch.float64)
    ref_biases = [t for t in ref_kwargs.values() if isinstance(t, torch.Tensor)]
    ref = agent_attention_reference(*ref_inputs, **ref_kwargs)
    ref_grads = torch.autograd.grad(ref, ref_inputs + ref_biases, cotangent)
    assert_matches(out, ref, dtype, "forward")
    for i, (g, rg) in enumerate(zip(grads, ref_grads)):
        assert_matches(g, rg, dtype, f"grad {i}")


def test_one_agent_broadcasts_one_softmax_average():
    # With a single agent the broadcast softmax is 1, so every query gets the agent's aggregate.
    q, k, v = (
        torch.randn(1, 1, 5, 4, dtype=torch.float64),
        torch.randn(1, 1, 7, 4, dtype=torch.float64),
        torch.randn(1, 1, 7, 3, dtype=torch.float64),
    )
    agent = torch.randn(1, 1, 1, 4, dtype=torch.float64)
    out = agent_attention(q, k, v, agent)
    aggregate = torch.softmax(agent @ k.transpose(-1, -2) / 2.0, dim=-1) @ v
    assert_matches(out, aggregate.expand_as(out), torch.float64)


def test_bad_shapes_name_the_constraint():
    q = torch.randn(1, 2, 5, 4)
    with pytest.raises(ValueError, match="share head_dim"):
        agent_attention(q, q, q, torch.randn(1, 2, 3, 6))
    with pytest.raises(ValueError, match=r"share \(batch, heads\)"):
        agent_attention(q, q, q, torch.randn(1, 3, 3, 4))


def test_auto_picks_sdpa_and_compiles_without_graph_breaks():
    (q, k, v, agent), kwargs = make_inputs(49)
    assert agent_attention.select("auto", q, k, v, agent, **kwargs).name == "sdpa"
    compiled = torch.compile(agent_attention_sdpa, backend="aot_eager", fullgraph=True)
    assert_matches(
        compiled(q, k, v, agent, **kwargs),
        agent_attention_sdpa(q, k, v, agent, **kwargs).double(),
        torch.float32,
    )
