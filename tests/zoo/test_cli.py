"""The attnzoo command line, driven through click's runner."""

from __future__ import annotations

import json

import pytest
import torch
from attnzoo.cli import _add_plugin_commands, cli
from click.testing import CliRunner
from safetensors.torch import save_file


@pytest.fixture
def run(toy_zoo):
    _add_plugin_commands()
    runner = CliRunner()

    def invoke(*args, ok=True):
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert (result.exit_code == 0) == ok, result.output
        return result.output

    return invoke


def test_plugins_table_and_json(run):
    assert "attnzoo-kernels" in run("plugins")
    rows = json.loads(run("plugins", "--json"))
    toy = next(r for r in rows if r["name"] == "toy")
    assert toy["status"] == "ok" and toy["models"] == ["toy-mlp", "toy-mlp-wide"]


def test_list_and_info(run):
    assert "toy-mlp-wide" in run("list", "toy-*")
    listed = json.loads(run("list", "toy-*", "--pretrained", "--json"))
    assert [m["name"] for m in listed] == ["toy-mlp"]
    card = json.loads(run("info", "toy_mlp", "--json"))
    assert card["name"] == "toy-mlp" and card["family"] == "toy"
    assert "0000.00000" in run("info", "toy-mlp")


def test_unknown_name_is_a_one_line_error(run):
    output = run("info", "toy-mpl", ok=False)
    assert "closest matches: toy-mlp" in output and "Traceback" not in output


def test_load_random_init_runs_a_forward_pass(run):
    output = run("load", "toy-mlp", "--random-init")
    assert "67 parameters" in output  # 4*8+8 + 8*3+3
    assert "weights: random init" in output
    assert "forward: output (1, 3)" in output


def test_load_local_weights(run, tmp_path):
    state = {
        "fc1.weight": torch.zeros(8, 4),
        "fc1.bias": torch.zeros(8),
        "fc2.weight": torch.zeros(3, 8),
        "fc2.bias": torch.ones(3),
    }
    save_file(state, tmp_path / "m.safetensors")
    output = run("load", "toy-mlp", "--weights", str(tmp_path / "m.safetensors"))
    assert "forward: output (1, 3)" in output


def test_load_without_reachable_weights_fails_cleanly(run, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    output = run("load", "toy-mlp", ok=False)
    assert "pass weights=PATH" in output and "Traceback" not in output


def test_list_no_pretrained_and_bad_batch_size(run):
    listed = json.loads(run("list", "toy-*", "--no-pretrained", "--json"))
    assert [m["name"] for m in listed] == ["toy-mlp-wide"]
    assert "Invalid value for '--batch-size'" in run(
        "load", "toy-mlp", "--random-init", "--batch-size", "0", ok=False
    )
