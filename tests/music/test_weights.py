"""The shipped checkpoints load offline by name and predict held-out chorales far better than chance."""

from __future__ import annotations

import math

import attnzoo
import pytest
import torch
from attnzoo_music.data import chorale_paths, iter_chorales, piece_name, split_of
from attnzoo_music.music_transformer import MusicTransformer
from attnzoo_music.plugin import TRAINED
from attnzoo_music.train import evaluate

MODELS = sorted(TRAINED)


@pytest.fixture(scope="module")
def test_pieces():
    """Three pieces of the test split, parsed straight from music21's corpus (no dataset cache)."""
    paths = [p for p in chorale_paths() if split_of(piece_name(p)) == "test"]
    pieces = []
    for item in iter_chorales(paths[:6]):
        pieces.append(item)
        if len(pieces) == 3:
            break
    assert len(pieces) == 3
    return pieces


@pytest.mark.parametrize("name", MODELS)
def test_shipped_weights_load_and_beat_a_random_model_on_test_pieces(name, test_pieces):
    model = attnzoo.load(name)
    assert isinstance(model, MusicTransformer) and not model.training
    assert all(p.device.type == "cpu" for p in model.parameters())
    torch.manual_seed(0)
    random_model = attnzoo.load(name, pretrained=False).eval()
    trained_nll = evaluate(model, test_pieces)
    random_nll = evaluate(random_model, test_pieces)
    assert random_nll > 0.8 * math.log(model.vocab_size)
    assert trained_nll < 0.35 * random_nll, (trained_nll, random_nll)


def test_weight_entries_point_at_files_inside_the_package():
    from importlib import resources

    from attnzoo.weights import sha256_of

    for name in MODELS:
        entry = attnzoo.info(name).weights[0]
        relative = entry.package_file.partition(":")[2]
        path = resources.files("attnzoo_music").joinpath(relative)
        assert path.is_file() and path.stat().st_size < 5_000_000
        assert sha256_of(path) == entry.sha256
