"""The attnzoo-vision plugin: torch-free listing, the BiFormer specs, and loading through the zoo."""

from __future__ import annotations

import subprocess
import sys

import attnzoo as zoo
import pytest
import torch

NAMES = {
    "biformer-t": "biformer_tiny",
    "biformer-s": "biformer_small",
    "biformer-b": "biformer_base",
    "biformer-stl": "biformer_stl",
}


def test_listing_and_describing_stay_torch_free():
    code = (
        "import sys, attnzoo, attnzoo_vision, attnzoo_vision.plugin\n"
        "names = attnzoo.list_models('biformer*')\n"
        "card = attnzoo.info('biformer_small')\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'timm' not in sys.modules, 'timm imported'\n"
        "print(','.join(names), card.name)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "biformer-b,biformer-s,biformer-stl,biformer-t biformer-s"


@pytest.mark.parametrize(("name", "alias"), sorted(NAMES.items()))
def test_specs(name, alias):
    card = zoo.info(alias)
    assert card.name == name and card.aliases == (alias,)
    assert card.family == "biformer" and card.task == "image-classification" and card.license == "MIT"
    assert card.paper.arxiv == "2303.08810" and card.paper.code_url == "https://github.com/rayleizhu/BiFormer"
    assert card.builder == f"attnzoo_vision.biformer:{alias}"
    assert card.input.shape == (3, 224, 224)
    assert card.input.preprocess == {
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "interpolation": "bicubic",
        "crop_pct": 0.875,
    }
    (entry,) = card.weights
    assert entry.tag == "in1k" and entry.license == "MIT" and entry.sha256 is None
    assert entry.origin.startswith("https://api.onedrive.com/v1.0/shares/")
    assert (
        entry.hub.repo_id == f"attnzoo/biformer-{alias.split('_')[1]}"
        and entry.hub.filename == "model.safetensors"
    )
    assert set(entry.metrics) == {"top1", "params_m", "gflops"}
    assert card.metrics["top1"] == entry.metrics["top1"]


def test_reported_params_agree_with_the_built_models():
    import attnzoo_vision.biformer as biformer

    for name, alias in NAMES.items():
        with torch.device("meta"):
            count = sum(p.numel() for p in getattr(biformer, alias)().parameters())
        assert round(count / 1e6, 1) == zoo.info(name).metrics["params_m"]


def test_zoo_load_without_weights_builds_with_overrides():
    model = zoo.load("biformer_small", pretrained=False, num_classes=10, depth=(1, 1, 1, 1))
    assert type(model).__name__ == "BiFormer" and model.head.out_features == 10
    assert model.pretrained_cfg["crop_pct"] == 0.875


def test_pretrained_without_published_weights_fails_clearly(hub):
    with pytest.raises(zoo.WeightsUnavailableError, match="attnzoo/biformer-small"):
        zoo.load("biformer-s")
