"""The Music Transformer network: shapes, causality, configs, the relative op wired through the kernels."""

from __future__ import annotations

import pytest
import torch
from attnzoo_music.configs import MODEL_CONFIGS
from attnzoo_music.music_transformer import (
    MusicTransformer,
    music_transformer_bach,
    music_transformer_bach_absolute,
    sinusoidal_timing_signal,
)
from attnzoo_music.tokenizer import VOCAB_SIZE

TINY = dict(dim=16, depth=2, num_heads=2, ffn_dim=32, seq_len=32, dropout=0.0)


@pytest.mark.parametrize("position", ["relative", "absolute"])
def test_forward_gives_logits_over_the_vocabulary(position):
    torch.manual_seed(0)
    model = MusicTransformer(position=position, **TINY).eval()
    tokens = torch.randint(0, VOCAB_SIZE, (3, 21))
    logits = model(tokens)
    assert logits.shape == (3, 21, VOCAB_SIZE) and torch.isfinite(logits).all()


@pytest.mark.parametrize("position", ["relative", "absolute"])
def test_changing_future_tokens_leaves_past_logits_unchanged(position):
    torch.manual_seed(1)
    model = MusicTransformer(position=position, **TINY).eval()
    tokens = torch.randint(0, VOCAB_SIZE, (2, 30))
    changed = tokens.clone()
    changed[:, 17:] = (changed[:, 17:] + 7) % VOCAB_SIZE
    before, after = model(tokens), model(changed)
    torch.testing.assert_close(after[:, :17], before[:, :17], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(after[:, 17:], before[:, 17:])


def test_relative_model_is_the_same_under_every_kernel_backend(monkeypatch):
    torch.manual_seed(2)
    model = MusicTransformer(position="relative", **TINY).double().eval()
    tokens = torch.randint(0, VOCAB_SIZE, (2, 19))
    outputs = {}
    for backend in ("reference", "skew", "torch"):
        monkeypatch.setenv("ATTNZOO_KERNEL_BACKEND", f"relative_attention={backend}")
        outputs[backend] = model(tokens)
    torch.testing.assert_close(outputs["skew"], outputs["reference"])
    torch.testing.assert_close(outputs["torch"], outputs["reference"])


def test_relative_positions_matter_and_absolute_model_has_no_table():
    torch.manual_seed(3)
    model = MusicTransformer(position="relative", **TINY).eval()
    tokens = torch.randint(0, VOCAB_SIZE, (1, 12))
    before = model(tokens)
    with torch.no_grad():
        for layer in model.layers:
            layer.attn.rel_emb.zero_()
    assert not torch.allclose(model(tokens), before)
    absolute = MusicTransformer(position="absolute", **TINY)
    assert all(layer.attn.rel_emb is None for layer in absolute.layers)


def test_timing_signal_is_sines_then_cosines():
    signal = sinusoidal_timing_signal(5, 8)
    assert signal.shape == (5, 8)
    torch.testing.assert_close(signal[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    torch.testing.assert_close(signal[3, 0], torch.tensor(3.0).sin())


def test_shipped_configs_build_on_meta_with_expected_sizes():
    with torch.device("meta"):
        relative = music_transformer_bach()
        absolute = music_transformer_bach_absolute()
    config = MODEL_CONFIGS["music-transformer-bach"]
    table = (
        config["depth"]
        * config["num_heads"]
        * config["max_relative_position"]
        * (config["dim"] // config["num_heads"])
    )
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(relative) - count(absolute) == table
    assert relative.layers[0].attn.rel_emb.shape == (4, 256, 32)
    assert count(absolute) < 1_000_000


def test_bad_configuration_and_input_are_rejected():
    with pytest.raises(ValueError, match="position must be"):
        MusicTransformer(position="rotary", **TINY)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MusicTransformer(**{**TINY, "num_heads": 3})
    model = MusicTransformer(**TINY)
    with pytest.raises(ValueError, match="token ids must lie in"):
        model(torch.tensor([[0, VOCAB_SIZE]]))
    with pytest.raises(ValueError, match="\\(batch, length\\)"):
        model(torch.tensor([0, 1]))
