"""The plugin: torch-free listing, and every ModelSpec building through zoo.load."""

from __future__ import annotations

import subprocess
import sys

import attnzoo as zoo
import pytest
import torch
from attnzoo_language.modeling import MixerLMForCausalLM
from attnzoo_language.plugin import model_specs

SPECS = {spec.name: spec for spec in model_specs()}


def test_plugin_import_is_torch_free():
    code = "import sys, attnzoo_language, attnzoo_language.plugin; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_the_zoo_lists_every_spec():
    assert set(SPECS) <= set(zoo.list_models("mixer-lm-*", task="text-generation"))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_zoo_load_builds_the_named_mixers(name):
    spec = SPECS[name]
    model = zoo.load(name, pretrained=False)
    assert isinstance(model, MixerLMForCausalLM)
    expected = spec.config["mixers"].split(",")
    assert model.config.mixers == (expected * 4)[:4]
    ids = torch.randint(0, spec.input.vocab_size, (1, *spec.input.shape))
    with torch.no_grad():
        assert model(ids).logits.shape == (1, 64, 256)


def test_builder_overrides_reach_the_config():
    model = zoo.load("mixer-lm-softmax-tiny", pretrained=False, num_hidden_layers=2, hidden_size=64)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    with torch.device("meta"):
        full = zoo.load("mixer-lm-grassmann-tiny", pretrained=False)
    assert sum(p.numel() for p in full.parameters()) == 1_010_944
