"""Shared fixtures: an isolated Hugging Face cache, a local Hub stand-in, and a toy plugin."""

from __future__ import annotations

import os
import tempfile

# No test may reach the network: until a test points HF_ENDPOINT at the local stand-in,
# the Hub is a closed port on loopback. The cache lives in a throwaway folder.
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="attnzoo-hf-home-")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("HF_HUB_OFFLINE", None)

import pytest  # noqa: E402
from hubstub import HubStub  # noqa: E402


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A running Hub stand-in on 127.0.0.1 with HF_ENDPOINT and a fresh cache pointed at it."""
    import huggingface_hub.constants as constants

    with HubStub() as stub:
        monkeypatch.setenv("HF_ENDPOINT", stub.url)
        monkeypatch.setattr(constants, "ENDPOINT", stub.url)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", stub.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        yield stub


@pytest.fixture
def toy_zoo():
    """The in-process toy plugin registered in the zoo (removed afterwards)."""
    import attnzoo.discovery as plugins
    import toyplugin

    plugins.add_plugin("toy", toyplugin)
    yield toyplugin
    plugins._extra_plugins.remove(("toy", toyplugin))
    plugins.reset()
