"""Plücker coordinates and the Causal Grassmann mixer: normalisation, antisymmetry, causality, locality."""

from __future__ import annotations

import pytest
import torch
from attnzoo_language.mixers import MixerContext, build_mixer
from attnzoo_language.mixers.grassmann import plucker_coordinates
from hypothesis import given, settings
from hypothesis import strategies as st
from lm_helpers import small_config


@settings(max_examples=25, deadline=None)
@given(r=st.integers(2, 9), seed=st.integers(0, 2**16))
def test_plucker_is_antisymmetric_normalised_and_a_plane_invariant(r, seed):
    gen = torch.Generator().manual_seed(seed)
    u, v = torch.randn(2, 3, r, dtype=torch.float64, generator=gen)
    p = plucker_coordinates(u, v)
    assert p.shape == (3, r * (r - 1) // 2)
    torch.testing.assert_close(p.norm(dim=-1), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(plucker_coordinates(v, u), -p)
    # Another basis of the same plane changes the raw coordinates by the determinant only.
    a, b, c, d = torch.randn(4, generator=gen, dtype=torch.float64).tolist()
    det = a * d - b * c
    raw = plucker_coordinates(u, v, normalize=False)
    torch.testing.assert_close(plucker_coordinates(a * u + b * v, c * u + d * v, normalize=False), det * raw)
    torch.testing.assert_close(plucker_coordinates(a * u + b * v, c * u + d * v), (1 if det > 0 else -1) * p)


def test_plucker_coordinates_follow_the_definition():
    u, v = torch.randn(2, 5, dtype=torch.float64)
    p = plucker_coordinates(u, v, normalize=False)
    expected = [u[i] * v[j] - u[j] * v[i] for i in range(5) for j in range(i + 1, 5)]
    torch.testing.assert_close(p, torch.stack(expected))


def test_parallel_vectors_give_zero_not_nan():
    u = torch.randn(4, dtype=torch.float64)
    p = plucker_coordinates(u, 3 * u)
    assert torch.isfinite(p).all() and p.abs().max() < 1e-6


def test_plucker_checks_shapes():
    with pytest.raises(ValueError, match="same shape"):
        plucker_coordinates(torch.randn(3), torch.randn(4))
    with pytest.raises(ValueError, match=">= 2"):
        plucker_coordinates(torch.randn(1), torch.randn(1))


def grassmann_mixer(windows=(1, 2, 4)):
    torch.manual_seed(0)
    mixer = build_mixer("grassmann", small_config("grassmann", grassmann_windows=list(windows)), 0).double()
    for p in mixer.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return mixer


@pytest.mark.parametrize("start", [0, 3, 9])
def test_fast_geometry_equals_the_window_by_window_form(start):
    mixer = grassmann_mixer()
    z = torch.randn(2, 10, 6, dtype=torch.float64)
    torch.testing.assert_close(mixer.geometry(z, start), mixer.geometry_reference(z, start))


def test_first_token_has_no_geometry():
    mixer = grassmann_mixer()
    z = torch.randn(1, 5, 6, dtype=torch.float64)
    g = mixer.geometry(z, 0)
    assert g[0, 0].abs().max() == 0 and g[0, 1:].abs().min() > 0


def test_output_at_t_depends_only_on_tokens_t_and_t_minus_the_window_offsets():
    mixer = grassmann_mixer(windows=(1, 3))
    x = torch.randn(1, 10, 32, dtype=torch.float64)
    base = mixer(x, MixerContext())[0]
    for s in range(10):
        changed = x.clone()
        changed[0, s] += torch.randn(32, dtype=torch.float64)
        moved = (mixer(changed, MixerContext())[0] - base).abs().amax(-1)[0]
        for t in range(10):
            assert bool(moved[t] > 1e-12) == (t - s in (0, 1, 3)), (s, t)
