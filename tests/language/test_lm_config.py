"""The mixer spec grammar and the config's validation and serialisation."""

from __future__ import annotations

import pytest
from attnzoo_language.configuration import MixerLMConfig, parse_mixers
from lm_helpers import small_config


def test_explicit_list_and_pattern_expand_per_layer():
    assert parse_mixers("softmax,grassmann,softmax,grassmann") == ["softmax", "grassmann"] * 2
    assert parse_mixers("grassmann*3+softmax") == ["grassmann"] * 3 + ["softmax"]
    assert parse_mixers(" MoH * 2 , mlp ") == ["moh", "moh", "mlp"]
    assert parse_mixers(["taylor", "softmax"]) == ["taylor", "softmax"]


def test_short_spec_tiles_over_the_layers():
    assert parse_mixers("mlp,softmax", 6) == ["mlp", "softmax"] * 3
    assert parse_mixers("grassmann*3+softmax", 8) == (["grassmann"] * 3 + ["softmax"]) * 2
    assert parse_mixers("softmax", 3) == ["softmax"] * 3


@pytest.mark.parametrize(
    ("spec", "layers", "message"),
    [
        ("softmax,attention", None, "unknown mixer"),
        ("", None, "empty"),
        ("softmax*x", None, "name\\*count"),
        ("softmax*0", None, ">= 1"),
        ("softmax,mlp,moh", 4, "does not divide"),
        ([], None, "empty"),
    ],
)
def test_bad_specs_name_the_constraint(spec, layers, message):
    with pytest.raises(ValueError, match=message):
        parse_mixers(spec, layers)


def test_config_stores_the_expanded_mixers_and_layer_count():
    config = small_config("grassmann*3+softmax", num_hidden_layers=8)
    assert config.num_hidden_layers == 8
    assert config.mixers[3] == "softmax" and config.mixers.count("grassmann") == 6
    again = MixerLMConfig.from_dict(config.to_dict())
    assert again.mixers == config.mixers and again.num_hidden_layers == 8
    assert again.grassmann_windows == [1, 2, 4]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden_size": 30}, "multiple of num_attention_heads"),
        ({"mixers": "moh", "moh_shared_heads": 5}, "moh_shared_heads"),
        ({"mixers": "moh", "moh_shared_heads": 1, "moh_routed_heads": 4}, "moh_routed_heads"),
        ({"mixers": "moh", "moh_shared_heads": 2, "moh_routed_heads": 0}, "every head is shared"),
        ({"mixers": "grassmann", "grassmann_reduced_dim": 1}, "grassmann_reduced_dim"),
        ({"mixers": "grassmann", "grassmann_windows": [0, 1]}, "positive offsets"),
    ],
)
def test_invalid_configs_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        small_config(**overrides)
