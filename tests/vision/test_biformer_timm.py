"""BiFormer through timm: registered names, pretrained configs, features_only and the head API."""

from __future__ import annotations

import attnzoo_vision.biformer  # noqa: F401  (registers the models with timm)
import pytest
import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, resolve_data_config

SHALLOW = {"depth": (1, 1, 1, 1)}


@pytest.mark.parametrize("name", ["biformer_tiny", "biformer_small", "biformer_base", "biformer_stl"])
def test_registered_with_imagenet_preprocessing(name):
    assert name in timm.list_models("biformer*")
    assert f"{name}.in1k" in timm.list_pretrained("biformer*")
    cfg = timm.get_pretrained_cfg(name).to_dict()
    assert cfg["mean"] == IMAGENET_DEFAULT_MEAN and cfg["std"] == IMAGENET_DEFAULT_STD
    assert cfg["interpolation"] == "bicubic" and cfg["crop_pct"] == 0.875
    assert cfg["input_size"] == (3, 224, 224) and cfg["num_classes"] == 1000
    assert cfg["hf_hub_id"].startswith("attnzoo/") and cfg["license"] == "mit"


def test_create_model_head_api_round_trip():
    torch.manual_seed(0)
    model = timm.create_model("biformer_small", pretrained=False, num_classes=10, **SHALLOW).eval()
    assert model.pretrained_cfg["crop_pct"] == 0.875
    data_cfg = resolve_data_config({}, model=model)
    assert data_cfg["interpolation"] == "bicubic" and data_cfg["mean"] == IMAGENET_DEFAULT_MEAN
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 512, 4, 4)
        pooled = model.forward_head(features, pre_logits=True)
        assert pooled.shape == (2, 512)
        logits = model.forward_head(features)
        torch.testing.assert_close(logits, model(x))
        torch.testing.assert_close(logits, model.get_classifier()(pooled))
        assert logits.shape == (2, 10)
        model.reset_classifier(3)
        assert model.get_classifier().out_features == 3 and model(x).shape == (2, 3)
        model.reset_classifier(0)
        assert model(x).shape == (2, 512)


def test_features_only_selected_stages():
    torch.manual_seed(0)
    model = timm.create_model(
        "biformer_small",
        pretrained=False,
        num_classes=10,
        features_only=True,
        out_indices=(1, 2, 3),
        **SHALLOW,
    ).eval()
    assert model.feature_info.channels() == [128, 256, 512]
    assert model.feature_info.reduction() == [8, 16, 32]
    with torch.no_grad():
        features = model(torch.randn(2, 3, 112, 112))
    assert [tuple(f.shape) for f in features] == [(2, 128, 14, 14), (2, 256, 7, 7), (2, 512, 4, 4)]


def test_features_only_matches_forward_intermediates():
    torch.manual_seed(0)
    full = timm.create_model("biformer_stl", pretrained=False, **SHALLOW).eval()
    feats = timm.create_model(
        "biformer_stl", pretrained=False, features_only=True, out_indices=(0, 2), **SHALLOW
    )
    feats.model.load_state_dict(
        {k: v for k, v in full.state_dict().items() if k.split(".")[0] not in ("head",)}, strict=False
    )
    feats.eval()
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        final, intermediates = full.forward_intermediates(x, indices=(0, 2))
        torch.testing.assert_close(final, full.forward_features(x))
        for got, want in zip(feats(x), intermediates):
            torch.testing.assert_close(got, want)
    assert len(feats.model.stages) == 3  # stage 4 was pruned


def test_pretrained_from_an_official_checkpoint_file(tmp_path):
    # timm's pretrained path, offline: a local official-style {'model': ...} .pth through checkpoint_filter_fn
    from pathlib import Path

    from safetensors.torch import load_file

    data = Path(__file__).parent / "data"
    weights = load_file(data / "biformer_reduced.weights.safetensors")
    io = load_file(data / "biformer_reduced.io.safetensors")
    path = tmp_path / "official.pth"
    torch.save({"model": weights}, path)
    model = timm.create_model(
        "biformer_tiny",
        pretrained=True,
        pretrained_cfg_overlay={"file": str(path), "num_classes": 10},
        num_classes=10,
        depth=(1, 1, 2, 1),
        embed_dim=(16, 24, 32, 40),
        qk_dims=(16, 24, 32, 40),
        head_dim=8,
        n_win=2,
        topks=(1, 2, 3, -2),
    ).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(io["input"]), io["logits"], rtol=1e-5, atol=1e-5)
