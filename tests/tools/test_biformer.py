"""The tools on a real family: an official-layout BiFormer checkpoint with the official model's outputs.

The weights and outputs are the vision package's parity data (tests/vision/data, produced by
the official code; see its NOTE.md): a reduced configuration with every tensor random.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import attnzoo as zoo
import torch
from attnzoo_tools.verify import verify
from safetensors.torch import load_file

DATA = Path(__file__).parents[1] / "vision" / "data"
CASE = "biformer_reduced_autopad"
# the official constructor arguments of this case (tests/vision/test_biformer_parity.py), as --set options
CONFIG = {
    "depth": [1, 1, 1, 1],
    "embed_dim": [16, 24, 32, 40],
    "qk_dims": [16, 24, 32, 40],
    "head_dim": 8,
    "n_win": 3,
    "topks": [2, 4, 5, -2],
    "mlp_ratios": [3, 3, 3, 3],
    "num_classes": 10,
    "auto_pad": True,
}


def test_official_biformer_checkpoint_converts_and_verifies(zoo_cli, tmp_path):
    weights = load_file(DATA / f"{CASE}.weights.safetensors")
    io = load_file(DATA / f"{CASE}.io.safetensors")
    official = tmp_path / "biformer_small_best.pth"
    # a DeiT-style training checkpoint: the state dict under 'model' beside an argparse.Namespace,
    # which torch.load(weights_only=True) refuses, so the restricted unpickler opens it
    torch.save(
        {"model": weights, "epoch": 299, "args": argparse.Namespace(model="biformer_small", lr=5e-4)},
        official,
    )

    out = tmp_path / "biformer-s"
    overrides = [item for key, value in CONFIG.items() for item in ("--set", f"{key}={json.dumps(value)}")]
    result = zoo_cli("convert", "biformer-s.in1k", official, "-o", out, *overrides)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "config.json").read_text())
    assert record["source"]["reader"] == "restricted unpickler"
    assert record["source"]["stand_ins"] == ["argparse.Namespace"]
    assert record["family"] == "biformer" and record["tag"] == "in1k"
    stored = load_file(out / "model.safetensors")
    assert stored.keys() == weights.keys()
    assert all(torch.equal(stored[k], weights[k]) for k in weights)

    # the release, loaded the way zoo.load loads it, computes the official model's logits
    model = zoo.load("biformer-s", weights=out, **record["config_overrides"])
    with torch.no_grad():
        torch.testing.assert_close(model(io["input"]), io["logits"], rtol=1e-5, atol=1e-5)

    report = verify(out, "biformer-s", source=official)
    assert report.input_shape == (1, 3, 224, 224) and report.output_shapes == [(1, 10)] and report.finite
    assert report.max_param_diff == 0.0
    # zoo.load's tensors sit at the safetensors file's offsets, where CPU kernels may round
    # differently; with the same values in fresh memory the outputs are bit-identical
    assert report.max_abs_diff <= 1e-5
    assert report.max_abs_diff == 0.0  # zoo.load copies unaligned tensors, so no rounding drift
