"""Full-size BiFormer variants have exactly the official state-dict keys, shapes and parameter counts.

Built on the meta device: no memory, no random init. ``data/official_state_dict_shapes.json``
was dumped from the official models (see ``data/NOTE.md``).
"""

from __future__ import annotations

import json
from pathlib import Path

import attnzoo_vision.biformer as biformer
import pytest
import torch

OFFICIAL = json.loads((Path(__file__).parent / "data" / "official_state_dict_shapes.json").read_text())
PARAM_COUNTS = {"biformer_tiny": 13_142_760, "biformer_small": 25_536_232, "biformer_base": 56_804_968}


def build_on_meta(name, **kwargs):
    with torch.device("meta"):
        return getattr(biformer, name)(**kwargs)


def shapes(model):
    return {key: list(value.shape) for key, value in model.state_dict().items()}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_state_dict_keys_and_shapes_equal_the_official_ones(name):
    model = build_on_meta(name)
    ours, official = shapes(model), OFFICIAL[name]["state_dict"]
    assert sorted(set(ours) - set(official)) == [] and sorted(set(official) - set(ours)) == []
    assert ours == official


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_parameter_counts_equal_the_official_ones(name):
    count = sum(p.numel() for p in build_on_meta(name).parameters())
    assert count == OFFICIAL[name]["params"]
    if name in PARAM_COUNTS:
        assert count == PARAM_COUNTS[name]


def test_an_official_state_dict_loads_strictly():
    # a state dict shaped as the official one (values irrelevant) assigns strictly onto a meta model
    model = build_on_meta("biformer_small")
    official = {
        key: torch.zeros(shape, device="meta")
        for key, shape in OFFICIAL["biformer_small"]["state_dict"].items()
    }
    result = model.load_state_dict(official, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize("name", ["biformer_small", "biformer_stl"])
def test_dense_prediction_backbone_has_the_official_detection_keys(name):
    # the official BiFormer_mm drops `head` and `norm` and adds a LayerNorm2d `extra_norms.i` per stage
    official = {k: v for k, v in OFFICIAL[name]["state_dict"].items() if not k.startswith(("head.", "norm."))}
    for i in range(4):
        width = next(
            shape[0]
            for key, shape in OFFICIAL[name]["state_dict"].items()
            if key.startswith(f"stages.{i}.") and key.endswith("norm1.weight")
        )
        official[f"extra_norms.{i}.weight"] = [width]
        official[f"extra_norms.{i}.bias"] = [width]
    assert shapes(build_on_meta(name, dense_prediction=True)) == official


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_full_size_forward_shapes_on_meta(name):
    model = build_on_meta(name, num_classes=7)
    with torch.device("meta"):
        assert model(torch.empty(2, 3, 224, 224)).shape == (2, 7)
        assert model.forward_features(torch.empty(1, 3, 224, 224)).shape == (1, model.num_features, 7, 7)
