"""Every mixer: shapes, gradients, causality, and the property each variant claims."""

from __future__ import annotations

import math

import pytest
import torch
from attnzoo_language.mixers import MixerContext, build_mixer, mixer_registry
from attnzoo_language.mixers.deconstructed import fixed_random_embeddings
from lm_helpers import ALL_MIXERS, small_config


def make_mixer(name: str, seed: int = 0, dtype=torch.float64):
    torch.manual_seed(seed)
    mixer = build_mixer(name, small_config(name), layer_idx=0).to(dtype)
    for p in mixer.parameters():  # non-default weights: biases and norms away from 0 and 1
        torch.nn.init.normal_(p, std=0.3)
    return mixer.eval()


def context(x: torch.Tensor, embeddings: torch.Tensor | None = None) -> MixerContext:
    batch, length, _ = x.shape
    return MixerContext(
        position_ids=torch.arange(length).expand(batch, length),
        input_embeddings=x if embeddings is None else embeddings,
    )


def run(mixer, x, embeddings=None):
    return mixer(x, context(x, embeddings))[0]


def test_registry_holds_every_configured_mixer():
    assert set(mixer_registry()) == set(ALL_MIXERS)


@pytest.mark.parametrize("name", ALL_MIXERS)
def test_forward_backward(name):
    mixer = make_mixer(name, dtype=torch.float32).train()
    x = torch.randn(2, 10, 32, requires_grad=True)
    y, aux = mixer(x, context(x))
    assert y.shape == x.shape and torch.isfinite(y).all()
    loss = y.square().mean() + (aux if aux is not None else 0)
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in mixer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", ALL_MIXERS)
def test_causal_future_tokens_do_not_change_the_past(name):
    mixer = make_mixer(name)
    x = torch.randn(2, 12, 32, dtype=torch.float64)
    changed = x.clone()
    changed[:, 7:] += torch.randn_like(changed[:, 7:])
    before, after = run(mixer, x), run(mixer, changed)
    torch.testing.assert_close(before[:, :7], after[:, :7])
    assert not torch.allclose(before[:, 7:], after[:, 7:])


def test_mlp_does_not_mix_tokens():
    mixer = make_mixer("mlp")
    x = torch.randn(1, 9, 32, dtype=torch.float64)
    full = run(mixer, x)
    for t in range(9):
        torch.testing.assert_close(run(mixer, x[:, t : t + 1]), full[:, t : t + 1])


def test_softmax_matches_the_equation():
    mixer = make_mixer("softmax")
    x = torch.randn(2, 8, 32, dtype=torch.float64)
    heads = lambda lin: lin(x).view(2, 8, 4, 8).transpose(1, 2)  # noqa: E731
    q, k, v = heads(mixer.q_proj), heads(mixer.k_proj), heads(mixer.v_proj)
    scores = (q @ k.transpose(-1, -2) / math.sqrt(8)).masked_fill(
        torch.ones(8, 8).triu(1).bool(), float("-inf")
    )
    expected = mixer.o_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 8, 32))
    torch.testing.assert_close(run(mixer, x), expected)


def test_taylor_uses_the_second_order_expansion_not_softmax():
    mixer = make_mixer("taylor")
    x = torch.randn(1, 8, 32, dtype=torch.float64)
    heads = lambda lin: lin(x).view(1, 8, 4, 8).transpose(1, 2)  # noqa: E731
    q, k, v = heads(mixer.q_proj), heads(mixer.k_proj), heads(mixer.v_proj)
    s = q @ k.transpose(-1, -2) / math.sqrt(8)
    weights = (1 + s + s**2 / 2) * torch.ones(8, 8).tril()
    assert (weights.sum(-1) > 0).all()
    expected = mixer.o_proj(((weights / weights.sum(-1, keepdim=True)) @ v).transpose(1, 2).reshape(1, 8, 32))
    torch.testing.assert_close(run(mixer, x), expected)
    softmax_version = mixer.o_proj(
        (s.masked_fill(torch.ones(8, 8).triu(1).bool(), float("-inf")).softmax(-1) @ v)
        .transpose(1, 2)
        .reshape(1, 8, 32)
    )
    assert not torch.allclose(run(mixer, x), softmax_version, atol=1e-3)


def test_elementwise_weights_depend_on_the_key_token_only():
    mixer = make_mixer("elementwise")
    x = torch.randn(1, 8, 32, dtype=torch.float64)
    heads = lambda lin: lin(x).view(1, 8, 4, 8).transpose(1, 2)  # noqa: E731
    q, k, v = torch.nn.functional.silu(heads(mixer.q_proj)), heads(mixer.k_proj), heads(mixer.v_proj)
    score = (q * k).sum(-1) / math.sqrt(8)  # (1, heads, 8): one number per key position
    weights = score.exp()[:, :, None, :] * torch.ones(8, 8).tril()
    expected = (weights / weights.sum(-1, keepdim=True)) @ v
    torch.testing.assert_close(run(mixer, x), mixer.o_proj(expected.transpose(1, 2).reshape(1, 8, 32)))


def test_rndembqk_maps_do_not_depend_on_the_input():
    # Q and K come from fixed embeddings, so the mixer is linear in the hidden states.
    mixer = make_mixer("rndembqk")
    a, b = torch.randn(2, 1, 10, 32, dtype=torch.float64)
    torch.testing.assert_close(run(mixer, a + 2 * b), run(mixer, a) + 2 * run(mixer, b))
    softmax = make_mixer("softmax")
    assert not torch.allclose(run(softmax, a + 2 * b), run(softmax, a) + 2 * run(softmax, b))
    config = small_config("rndembqk")
    expected = fixed_random_embeddings(
        config.max_position_embeddings, 32, config.rndembqk_seed, config.rndembqk_std
    )
    torch.testing.assert_close(mixer.fixed_embeddings.float(), expected)


def test_staticembqk_takes_queries_and_keys_from_the_input_embeddings():
    mixer = make_mixer("staticembqk")
    h, other_h, e, other_e = torch.randn(4, 1, 10, 32, dtype=torch.float64)
    # With e fixed the maps are fixed: linear in the hidden states.
    torch.testing.assert_close(run(mixer, h + other_h, e), run(mixer, h, e) + run(mixer, other_h, e))
    assert not torch.allclose(run(mixer, h, e), run(mixer, h, other_e))


def test_mixers_that_need_context_inputs_say_so():
    x = torch.randn(1, 4, 32, dtype=torch.float64)
    with pytest.raises(ValueError, match="input embeddings"):
        make_mixer("staticembqk")(x, MixerContext())
    with pytest.raises(ValueError, match="position ids"):
        make_mixer("rndembqk")(x, MixerContext())
