"""BiFormer equals the official implementation on the same (random, non-default) weights, fp32 on CPU.

The reference data in ``data/`` was produced by the official code outside this repository
(see ``data/NOTE.md``): reduced configurations, every parameter and buffer drawn at random.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from attnzoo_vision.biformer import BiFormer, BiFormerSTL, checkpoint_filter_fn, convert_official
from safetensors.torch import load_file

DATA = Path(__file__).parent / "data"

# the official constructor arguments of each case, in our builder's vocabulary
PARITY_CASES = {
    "biformer_reduced": (
        BiFormer,
        dict(
            depth=(1, 1, 2, 1),
            embed_dim=(16, 24, 32, 40),
            qk_dims=(16, 24, 32, 40),
            head_dim=8,
            n_win=2,
            topks=(1, 2, 3, -2),
            mlp_ratios=(3, 3, 3, 3),
            num_classes=10,
        ),
    ),
    "biformer_reduced_autopad": (
        BiFormer,
        dict(
            depth=(1, 1, 1, 1),
            embed_dim=(16, 24, 32, 40),
            qk_dims=(16, 24, 32, 40),
            head_dim=8,
            n_win=3,
            topks=(2, 4, 5, -2),
            mlp_ratios=(3, 3, 3, 3),
            num_classes=10,
            auto_pad=True,
        ),
    ),
    "biformer_stl_reduced": (
        BiFormerSTL,
        dict(
            depth=(1, 1, 1, 1),
            embed_dim=(16, 24, 32, 40),
            head_dim=8,
            n_wins=(2, 2, 2, 2),
            topks=(1, 2, 3, -2),
            mlp_ratios=(4, 4, 4, 4),
            num_classes=10,
        ),
    ),
}


def load_case(name):
    cls, config = PARITY_CASES[name]
    return (
        cls,
        config,
        load_file(DATA / f"{name}.weights.safetensors"),
        load_file(DATA / f"{name}.io.safetensors"),
    )


@pytest.mark.parametrize("name", sorted(PARITY_CASES))
def test_outputs_equal_the_official_model(name):
    cls, config, weights, io = load_case(name)
    model = cls(**config).eval()
    model.load_state_dict(weights, strict=True)
    with torch.no_grad():
        features = model.forward_features(io["input"])
        logits = model(io["input"])
    assert features.shape == io["features"].shape
    torch.testing.assert_close(features, io["features"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, io["logits"], rtol=1e-5, atol=1e-5)
    # the data is not degenerate: classes differ, so a wrong model could not match by accident
    assert io["logits"].std() > 0.5


def test_the_reference_backend_gives_the_same_outputs(monkeypatch):
    # the whole model through the float64 loop reference of the routing op
    monkeypatch.setenv("ATTNZOO_KERNEL_BACKEND", "routing_attention=reference")
    cls, config, weights, io = load_case("biformer_reduced")
    model = cls(**config).eval()
    model.load_state_dict(weights, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(model(io["input"]), io["logits"], rtol=1e-5, atol=1e-5)


def test_parity_fails_with_perturbed_weights():
    cls, config, weights, io = load_case("biformer_reduced")
    key = "stages.0.0.attn.qkv.qkv.weight"
    weights[key] = weights[key] + 0.05 * torch.randn_like(weights[key])
    model = cls(**config).eval()
    model.load_state_dict(weights, strict=True)
    with torch.no_grad():
        assert not torch.allclose(model(io["input"]), io["logits"], rtol=1e-5, atol=1e-5)


def test_converter_unwraps_official_checkpoints():
    _, _, weights, _ = load_case("biformer_stl_reduced")
    for raw in (weights, {"model": weights}, {"model": {f"module.{k}": v for k, v in weights.items()}}):
        converted = convert_official(raw, None)
        assert converted.keys() == weights.keys()
        assert all(converted[k] is weights[k] for k in weights)
        assert checkpoint_filter_fn(raw, None).keys() == weights.keys()


def test_zoo_load_converts_an_official_pth_checkpoint(tmp_path):
    import attnzoo as zoo

    cls, config, weights, io = load_case("biformer_reduced")
    path = tmp_path / "biformer_reduced_official.pth"
    torch.save({"model": weights, "epoch": 300}, path)
    overrides = {k: v for k, v in config.items()}
    model = zoo.load("biformer-t", weights=path, **overrides).eval()
    assert isinstance(model, cls)
    with torch.no_grad():
        torch.testing.assert_close(model(io["input"]), io["logits"], rtol=1e-5, atol=1e-5)
