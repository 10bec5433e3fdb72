"""Helpers for the tools' tests: official-style toy checkpoints and the CLI with plugin commands."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from toy_checkpoints import official_toy_state


@pytest.fixture
def official_pth(tmp_path):
    """An official toy .pth: the state dict wrapped as {'model': ...} with training leftovers."""
    path = tmp_path / "toy_official.pth"
    torch.save({"model": official_toy_state(), "epoch": 300, "optimizer": {"lr": 0.1}}, path)
    return path


@pytest.fixture
def zoo_cli(toy_zoo):
    """Invoke ``attnzoo ...`` in-process with the plugins' commands added; returns a runner function."""
    from attnzoo.cli import _add_plugin_commands, cli

    _add_plugin_commands()
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def objects_zoo(toy_zoo):
    """The toy plugin plus a plugin whose official checkpoints pickle whole model objects."""
    import attnzoo.discovery as discovery
    import objplugin

    discovery.add_plugin("toy-objects", objplugin)
    yield objplugin
    discovery._extra_plugins.remove(("toy-objects", objplugin))
    discovery.reset()
