"""attnzoo verify: the release loads as zoo.load loads it and matches the official checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from attnzoo.errors import HashMismatchError, ZooError
from attnzoo_tools.verify import verify
from toy_checkpoints import official_toy_state


@pytest.fixture
def release(zoo_cli, official_pth, tmp_path):
    out = tmp_path / "release"
    assert zoo_cli("convert", "toy-mlp", official_pth, "-o", out).exit_code == 0
    return out


def test_verify_against_source_reports_zero_difference(zoo_cli, release, official_pth):
    result = zoo_cli("verify", release, "toy-mlp", "--source", official_pth)
    assert result.exit_code == 0, result.output
    assert "max |output diff| vs source: 0 " in result.output
    assert "max |param diff| vs source: 0" in result.output

    report = verify(release, "toy-mlp", source=official_pth, batch_size=3)
    assert report.max_abs_diff == 0.0 and report.max_param_diff == 0.0
    assert report.input_shape == (3, 4) and report.output_shapes == [(3, 3)] and report.finite


def test_verify_uses_the_zoo_load_path(release, monkeypatch):
    import attnzoo

    calls = []
    original = attnzoo.load

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(attnzoo, "load", spy)
    report = verify(release, "toy-mlp")
    assert calls == [(("toy-mlp",), {"weights": release})]
    assert report.max_abs_diff is None and report.output_shapes == [(1, 3)]


def test_verify_detects_a_different_source(zoo_cli, release, tmp_path):
    other = tmp_path / "other.pth"
    torch.save({"model": official_toy_state(seed=1)}, other)
    result = zoo_cli("verify", release, "toy-mlp", "--source", other)
    assert result.exit_code == 1
    assert "output difference above atol" in result.output
    assert verify(release, "toy-mlp", source=other).max_abs_diff > 1e-3


def test_verify_refuses_a_changed_release(release):
    weights = release / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1
    weights.write_bytes(bytes(blob))
    with pytest.raises(HashMismatchError, match="changed after `attnzoo convert`"):
        verify(release, "toy-mlp")


def test_verify_refuses_another_models_release(release):
    with pytest.raises(ZooError, match="converted for 'toy-mlp', not 'toy-mlp-wide'"):
        verify(release, "toy-mlp-wide")


def test_verify_applies_recorded_config(zoo_cli, tmp_path):
    path = tmp_path / "wide.pth"
    torch.save({"model": official_toy_state(width=16)}, path)
    out = tmp_path / "wide"
    assert zoo_cli("convert", "toy-mlp", path, "-o", out, "--set", "width=16").exit_code == 0
    assert json.loads((out / "config.json").read_text())["config_overrides"] == {"width": 16}
    assert verify(out, "toy-mlp", source=path).max_abs_diff == 0.0
