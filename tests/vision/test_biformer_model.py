"""BiFormer at small sizes: forward/backward of every variant's layout, input-size rules, dense mode, compile."""

from __future__ import annotations

import re

import attnzoo_vision.biformer as biformer
import pytest
import torch
from attnzoo_vision.biformer import BiFormer

# every released layout (widths, heads, topks, windows) with one block per stage, to keep CPU time small
SHALLOW = {"depth": (1, 1, 1, 1)}
VARIANTS = ["biformer_tiny", "biformer_small", "biformer_base", "biformer_stl"]


def tiny_model(**overrides):
    config = dict(
        depth=(1, 1, 1, 1),
        embed_dim=(16, 24, 32, 40),
        qk_dims=(16, 24, 32, 40),
        head_dim=8,
        n_win=2,
        topks=(1, 2, 3, -2),
        num_classes=5,
    )
    config.update(overrides)
    return BiFormer(**config)


@pytest.mark.parametrize("name", VARIANTS)
def test_forward_and_backward_shapes(name):
    torch.manual_seed(0)
    model = getattr(biformer, name)(num_classes=3, **SHALLOW)
    x = torch.randn(2, 3, 112, 112, requires_grad=True)  # the smallest square input that fits n_win=7
    logits = model(x)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    logits.square().sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape and torch.isfinite(x.grad).all()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []


def conv_out(n, kernel, stride, padding):
    return (n + 2 * padding - kernel) // stride + 1


def fits_biformer(size, n_win=7):
    # independent of the model: the official stem (two 3x3/2 convs) and downsamplings, routed stages 1-3
    side = conv_out(conv_out(size, 3, 2, 1), 3, 2, 1)
    sides = [side]
    for _ in range(3):
        sides.append(conv_out(sides[-1], 3, 2, 1))
    return all(s >= 1 for s in sides) and all(s % n_win == 0 for s in sides[:3])


@pytest.mark.parametrize("size", [256, 100, 230, 512])
def test_unfit_input_names_the_constraint_and_the_nearest_sizes(size):
    with torch.device("meta"):
        model = biformer.biformer_small()
        with pytest.raises(ValueError, match=r"not divisible by n_win=7") as info:
            model(torch.empty(1, 3, size, size))
    message = str(info.value)
    assert f"input {size}x{size}" in message and "auto_pad=True" in message
    suggested = [
        int(s) for s in re.search(r"nearest input sizes that fit: ([\d, ]+)", message).group(1).split(", ")
    ]
    below = max((s for s in range(1, size) if fits_biformer(s)), default=None)
    above = min(s for s in range(size + 1, size + 1000) if fits_biformer(s))
    assert suggested == [s for s in (below, above) if s is not None]
    for s in suggested:  # each suggestion really runs
        with torch.device("meta"):
            assert model(torch.empty(1, 3, s, s)).shape == (1, 1000)


def test_unfit_rectangular_input_names_the_offending_side():
    with torch.device("meta"):
        model = biformer.biformer_tiny()
        with pytest.raises(ValueError, match=r"input 224x256 .* nearest widths that fit: 224, 333") as info:
            model(torch.empty(1, 3, 224, 256))
    assert "heights" not in str(info.value)


def test_the_message_for_256_matches_the_docs():
    with torch.device("meta"), pytest.raises(ValueError) as info:
        biformer.biformer_small()(torch.empty(1, 3, 256, 256))
    assert str(info.value) == (
        "input 256x256 gives feature map 64x64 at stage 1, which is not divisible by n_win=7; "
        "nearest input sizes that fit: 224, 333 (or build the model with auto_pad=True)"
    )


def test_auto_pad_runs_any_size_and_matches_exact_sizes():
    torch.manual_seed(0)
    model = tiny_model(auto_pad=True).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 45, 61)).shape == (1, 5)
        fitted = torch.randn(1, 3, 32, 32)  # maps 8, 4, 2: no padding needed, same as without auto_pad
        strict = tiny_model(auto_pad=False).eval()
        strict.load_state_dict(model.state_dict())
        torch.testing.assert_close(model(fitted), strict(fitted))
        with pytest.raises(ValueError, match="not divisible by n_win=2"):
            strict(torch.randn(1, 3, 45, 61))


def test_routing_attention_module_pads_or_refuses():
    attn = biformer.BiLevelRoutingAttention(dim=8, num_heads=2, n_win=3, topk=2)
    with pytest.raises(ValueError, match=r"feature map 7x9 is not divisible by n_win=3"):
        attn(torch.randn(1, 7, 9, 8))
    attn.auto_pad = True
    assert attn(torch.randn(1, 7, 9, 8)).shape == (1, 7, 9, 8)


def test_unsupported_options_are_refused():
    with pytest.raises(ValueError, match="kv_downsample_mode"):
        tiny_model(kv_downsample_mode="ada_avgpool")
    with pytest.raises(ValueError, match="topk=0 is not supported"):
        tiny_model(topks=(1, 2, 0, -2))
    with pytest.raises(ValueError, match=r"topk=5 must lie in \[1, n_win\*\*2 = 4\]"):
        tiny_model(topks=(1, 2, 5, -2))


def test_dense_prediction_returns_per_stage_normed_maps():
    torch.manual_seed(0)
    dense = tiny_model(dense_prediction=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        outs = dense(x)
        assert [tuple(o.shape) for o in outs] == [(2, 16, 8, 8), (2, 24, 4, 4), (2, 32, 2, 2), (2, 40, 1, 1)]
        y, expected = x, []
        for i in range(4):
            y = dense.stages[i](dense.downsample_layers[i](y))
            mean = y.mean(1, keepdim=True)
            var = y.var(1, keepdim=True, unbiased=False)
            normed = (y - mean) / torch.sqrt(var + 1e-6)
            expected.append(
                normed * dense.extra_norms[i].weight.view(1, -1, 1, 1)
                + dense.extra_norms[i].bias.view(1, -1, 1, 1)
            )
        for got, want in zip(outs, expected):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(RuntimeError, match="no classification head"):
        dense.forward_head(outs[-1])


def test_torch_compile_smoke_on_a_reduced_tiny():
    torch.manual_seed(0)
    reduced = dict(
        depth=(1, 1, 1, 1),
        embed_dim=(16, 24, 32, 40),
        qk_dims=(16, 24, 32, 40),
        head_dim=8,
        n_win=2,
        topks=(1, 2, 3, -2),
    )
    model = biformer.biformer_tiny(num_classes=4, **reduced).eval()
    # aot_eager: dynamo + AOT autograd without C++ codegen; fullgraph proves there is no graph break
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = tiny_model(drop_path_rate=0.0)
    x = torch.randn(2, 3, 32, 32)
    model(x).sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    for a, p in zip(plain, model.parameters()):
        torch.testing.assert_close(p.grad, a)
