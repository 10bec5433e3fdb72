"""QuatRoPE/IGRE patched into Hugging Face LLaMA: official parity, invariance, isolation, cache equivalence."""

from __future__ import annotations

from pathlib import Path

import attnzoo_spatial
import pytest
import torch
from attnzoo.errors import ConverterError
from attnzoo_kernels.ops.rotary import quat_rotation
from attnzoo_spatial.quatrope import (
    QuatRoPESettings,
    convert_official,
    merge_lora,
    official_object_gate,
    quatrope_bias,
    quatrope_llama_tiny,
)
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

DATA = Path(__file__).parent / "data" / "quatrope_official_tiny.safetensors"
# the 4.39 code rounds RMSNorm, the RoPE tables and the returned logits through float32
PARITY = dict(atol=1e-5, rtol=1e-5, check_dtype=False)


@pytest.fixture(scope="module")
def official() -> dict[str, torch.Tensor]:
    return load_file(DATA)


def _official_model(official, attn_implementation: str) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )
    config._attn_implementation = attn_implementation
    model = LlamaForCausalLM(config).double().eval()
    state = {
        key.removeprefix("weight."): value.double()
        for key, value in official.items()
        if key.startswith("weight.")
    }
    model.load_state_dict(state, strict=True)
    return model


def _tiny(attn_implementation: str = "eager", seed: int = 0, **patch_options) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    model = quatrope_llama_tiny(attn_implementation=attn_implementation, **patch_options).double().eval()
    with torch.no_grad():  # weights large enough that the QuatRoPE term moves the logits visibly
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.25)
    return model


def _objects(batch: int, length: int, span: tuple[int, int], seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    positions = torch.zeros(batch, length, 3, dtype=torch.float64)
    positions[:, span[0] : span[1]] = (
        torch.rand(batch, span[1] - span[0], 3, generator=gen, dtype=torch.float64) * 8 - 4
    )
    return positions


def _logits(model, input_ids, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids, **kwargs).logits


# --- parity with the released code (transformers 4.39.3, tests/spatial/data/NOTE.md) -------------------


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("official_scaling", ["eager", "sdpa"])
def test_official_mode_matches_released_igre_logits(official, attn_implementation, official_scaling):
    model = attnzoo_spatial.patch(
        _official_model(official, attn_implementation), "official", official_scaling=official_scaling
    )
    logits = _logits(model, official["input_ids"], object_positions=official["obj_pos64"])
    torch.testing.assert_close(logits, official[f"logits_{official_scaling}"], **PARITY)
    # the two released attention classes differ by far more than the tolerance
    assert (official["logits_eager"] - official["logits_sdpa"]).abs().max() > 100 * PARITY["atol"]


def test_official_mode_without_objects_matches_released_plain_logits(official):
    model = attnzoo_spatial.patch(_official_model(official, "eager"), "official")
    torch.testing.assert_close(
        _logits(model, official["input_ids"]), official["logits_noobj_eager"], **PARITY
    )
    assert (official["logits_eager"] - official["logits_noobj_eager"]).abs().max() > 100 * PARITY["atol"]


def test_official_mode_matches_released_cached_greedy_decoding(official):
    model = attnzoo_spatial.patch(_official_model(official, "eager"), "official")
    input_ids = official["input_ids"]
    out = model.generate(
        input_ids,
        attention_mask=torch.ones_like(input_ids),
        object_positions=official["obj_pos64"],
        max_new_tokens=5,
        do_sample=False,
        output_logits=True,
        return_dict_in_generate=True,
        pad_token_id=0,
    )
    assert torch.equal(out.sequences[:, input_ids.shape[1] :], official["generated"])
    torch.testing.assert_close(torch.stack(out.logits, dim=1), official["decode_logits"][:, :5], **PARITY)


def test_official_rotation_term_and_token_choice_match_released_code(official):
    positions = official["obj_pos64"]
    model = attnzoo_spatial.patch(_official_model(official, "eager"), "official")
    settings: QuatRoPESettings = model.model.layers[0].self_attn._quatrope
    assert settings.rot_factor == pytest.approx(official["rot_factor"].item(), rel=1e-7)
    gate = official_object_gate(positions)
    # sample 0 has a zero-position token inside its object span: it still carries the (unrotated) extension
    assert gate[0].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    turned = quat_rotation(positions, gate, settings.rot_factor)
    torch.testing.assert_close(turned, official["extension"], atol=1e-6, rtol=1e-6)


# --- the properties the method promises ------------------------------------------------------------------


@pytest.mark.parametrize("compat", ["official", "paper"])
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_without_objects_the_model_equals_plain_rope(compat, attn_implementation):
    plain = _tiny(attn_implementation)
    patched = attnzoo_spatial.patch(_tiny(attn_implementation), compat)
    input_ids = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(3))
    expected = _logits(plain, input_ids)
    torch.testing.assert_close(_logits(patched, input_ids), expected, atol=1e-12, rtol=0)
    empty = torch.zeros(2, 9, 3, dtype=torch.float64)
    torch.testing.assert_close(
        _logits(patched, input_ids, object_positions=empty), expected, atol=1e-12, rtol=0
    )
    # and the objects do change the result, so the comparison above can fail
    moved = _logits(patched, input_ids, object_positions=_objects(2, 9, (2, 7)))
    assert (moved - expected).abs().max() > 1e-3


def test_paper_mode_object_scores_are_invariant_to_translating_every_object():
    model = attnzoo_spatial.patch(_tiny(), "paper")
    input_ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(4))
    positions = _objects(2, 12, (3, 9))
    mask = positions.ne(0).any(-1)
    shifted = positions + torch.tensor([2.5, -7.0, 1.25], dtype=torch.float64) * mask.unsqueeze(-1)
    base = _logits(model, input_ids, object_positions=positions, object_mask=mask)
    torch.testing.assert_close(_logits(model, input_ids, object_positions=shifted, object_mask=mask), base)

    index = torch.arange(12)
    settings = model.model.layers[0].self_attn._quatrope
    scores = quatrope_bias(settings, positions, mask, index, index)
    torch.testing.assert_close(quatrope_bias(settings, shifted, mask, index, index), scores)
    # the official form is not translation invariant: the same shift moves its logits
    official = attnzoo_spatial.patch(_tiny(), "official")
    assert not torch.allclose(
        _logits(official, input_ids, object_positions=shifted),
        _logits(official, input_ids, object_positions=positions),
    )


def test_paper_mode_uses_every_coordinate_while_official_ignores_x():
    input_ids = torch.randint(0, 256, (1, 10), generator=torch.Generator().manual_seed(5))
    positions = _objects(1, 10, (2, 8))
    moved_x = positions.clone()
    moved_x[0, 4, 0] += 1.5  # one object moves along x only
    official = attnzoo_spatial.patch(_tiny(), "official")
    torch.testing.assert_close(
        _logits(official, input_ids, object_positions=moved_x),
        _logits(official, input_ids, object_positions=positions),
    )
    paper = attnzoo_spatial.patch(_tiny(), "paper", axis=(0.0, 0.0, 1.0))
    assert not torch.allclose(
        _logits(paper, input_ids, object_positions=moved_x),
        _logits(paper, input_ids, object_positions=positions),
    )


def test_non_object_tokens_are_isolated_from_the_extension():
    model = attnzoo_spatial.patch(_tiny(), "paper")
    input_ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(6))
    positions = _objects(2, 12, (3, 9))
    mask = positions.ne(0).any(-1)
    base = _logits(model, input_ids, object_positions=positions, object_mask=mask)
    # whatever coordinates a non-object token carries, the gate keeps them out
    junk = positions.clone()
    junk[~mask] = torch.randn(int((~mask).sum()), 3, dtype=torch.float64) * 10
    torch.testing.assert_close(_logits(model, input_ids, object_positions=junk, object_mask=mask), base)

    index = torch.arange(12)
    scores = quatrope_bias(model.model.layers[0].self_attn._quatrope, junk, mask, index, index)
    assert scores[~mask.unsqueeze(-1).expand_as(scores)].abs().max() == 0
    assert scores.permute(0, 2, 1)[~mask.unsqueeze(-1).expand_as(scores)].abs().max() == 0
    # tokens before the first object see exactly the plain model
    plain = _logits(_tiny(), input_ids)
    torch.testing.assert_close(base[:, :3], plain[:, :3], atol=1e-12, rtol=0)
    assert not torch.allclose(base[:, 3:], plain[:, 3:])


def test_official_mode_extends_the_whole_span_between_the_first_and_last_object():
    positions = torch.zeros(2, 8, 3)
    positions[0, 2] = torch.tensor([1.0, 0.0, 0.0])
    positions[0, 5] = torch.tensor([0.0, 0.0, -2.0])
    assert official_object_gate(positions).tolist() == [[0, 0, 1, 1, 1, 1, 0, 0], [0] * 8]


@pytest.mark.parametrize("compat", ["official", "paper"])
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_generate_with_cache_equals_the_full_forward(compat, attn_implementation):
    # float32: Hugging Face's eager float64 path turns left-padded rows into NaN, patched or not
    model = attnzoo_spatial.patch(_tiny(attn_implementation), compat).float()
    input_ids = torch.randint(0, 256, (2, 10), generator=torch.Generator().manual_seed(7))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :2] = 0  # left padding in the second row
    positions = _objects(2, 10, (3, 8)).float()
    out = model.generate(
        input_ids,
        attention_mask=attention_mask,
        object_positions=positions,
        max_new_tokens=6,
        do_sample=False,
        output_logits=True,
        return_dict_in_generate=True,
        pad_token_id=0,
    )
    sequences = out.sequences
    full_mask = torch.cat((attention_mask, torch.ones(2, 6, dtype=attention_mask.dtype)), dim=1)
    position_ids = (full_mask.cumsum(-1) - 1).clamp(min=0)
    full = _logits(
        model, sequences, attention_mask=full_mask, position_ids=position_ids, object_positions=positions
    )
    torch.testing.assert_close(torch.stack(out.logits, dim=1), full[:, 9:-1], atol=1e-4, rtol=1e-4)
    assert torch.equal(sequences[:, 10:], full[:, 9:-1].argmax(-1))
    without = _logits(model, sequences, attention_mask=full_mask, position_ids=position_ids)
    assert (without[:, 9:-1] - full[:, 9:-1]).abs().max() > 1e-3


def test_unpatch_restores_the_plain_model():
    model = _tiny()
    input_ids = torch.randint(0, 256, (1, 7), generator=torch.Generator().manual_seed(8))
    expected = _logits(model, input_ids)
    attnzoo_spatial.patch(model, "paper")
    assert attnzoo_spatial.is_patched(model)
    attnzoo_spatial.unpatch(model)
    assert not attnzoo_spatial.is_patched(model)
    torch.testing.assert_close(_logits(model, input_ids), expected, atol=0, rtol=0)
    # an unpatched LLaMA swallows unknown keywords: the objects are silently ignored
    torch.testing.assert_close(_logits(model, input_ids, object_positions=_objects(1, 7, (1, 4))), expected)


def test_bad_arguments_name_the_constraint():
    model = _tiny()
    with pytest.raises(ValueError, match="compat must be one of"):
        attnzoo_spatial.patch(model, "quaternion")
    with pytest.raises(ValueError, match="official_scaling"):
        attnzoo_spatial.patch(model, "paper", official_scaling="sdpa")
    with pytest.raises(ValueError, match="no LLaMA-style attention"):
        attnzoo_spatial.patch(torch.nn.Linear(2, 2))
    attnzoo_spatial.patch(model, "official")
    input_ids = torch.randint(0, 256, (1, 6))
    positions = _objects(1, 6, (1, 4))
    with pytest.raises(ValueError, match="pass object_mask only with compat='paper'"):
        model(input_ids, object_positions=positions, object_mask=positions.ne(0).any(-1))
    with pytest.raises(ValueError, match=r"\(batch, length, 3\)"):
        model(input_ids, object_positions=positions[..., :2])
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="use 'sdpa' or 'eager'"):
        model(input_ids, object_positions=positions)


# --- the official checkpoint converter --------------------------------------------------------------------


def _fake_official_checkpoint(layers: int = 2, hidden: int = 8, rank: int = 2) -> dict:
    gen = torch.Generator().manual_seed(9)
    prefix = "llama_model.base_model.model."
    state = {}
    for layer in range(layers):
        for block, names in (("self_attn", "qkvo"), ("mlp", ("gate", "up", "down"))):
            for name in names:
                stem = f"{prefix}model.layers.{layer}.{block}.{name}_proj"
                state[f"{stem}.lora_A.default.weight"] = torch.randn(rank, hidden, generator=gen)
                state[f"{stem}.lora_B.default.weight"] = torch.randn(hidden, rank, generator=gen)
    state[f"{prefix}model.embed_tokens.weight"] = torch.randn(20, hidden, generator=gen)
    state[f"{prefix}lm_head.weight"] = torch.randn(20, hidden, generator=gen)
    state["object_proj.0.weight"] = torch.randn(hidden, 4, generator=gen)
    state["object_img_proj.2.bias"] = torch.randn(hidden, generator=gen)
    state["pos_embedding.gauss_B"] = torch.randn(3, 64, generator=gen)
    return {"model": state, "epoch": 2, "global_step": 77139}


def test_convert_official_maps_lora_decoder_and_projector_keys():
    checkpoint = _fake_official_checkpoint()
    converted = convert_official(checkpoint, None)
    assert len(converted) == len(checkpoint["model"])
    assert "model.layers.1.self_attn.q_proj.lora_A.weight" in converted
    assert "model.layers.0.mlp.down_proj.lora_B.weight" in converted
    assert "lm_head.weight" in converted and "model.embed_tokens.weight" in converted
    assert "projector.object_proj.0.weight" in converted
    src = checkpoint["model"][
        "llama_model.base_model.model.model.layers.1.self_attn.q_proj.lora_A.default.weight"
    ]
    assert converted["model.layers.1.self_attn.q_proj.lora_A.weight"] is src


def test_merge_lora_folds_the_low_rank_update_into_the_base_weights():
    converted = convert_official(_fake_official_checkpoint())
    base = {}
    for key in converted:
        if key.endswith(".lora_A.weight"):
            base[key.removesuffix(".lora_A.weight") + ".weight"] = torch.randn(8, 8)
    base["model.embed_tokens.weight"] = torch.zeros(20, 8)
    merged = merge_lora(base, converted, scaling=0.25)
    stem = "model.layers.0.self_attn.v_proj"
    expected = (
        base[f"{stem}.weight"]
        + 0.25 * converted[f"{stem}.lora_B.weight"] @ converted[f"{stem}.lora_A.weight"]
    )
    torch.testing.assert_close(merged[f"{stem}.weight"], expected)
    assert torch.equal(merged["model.embed_tokens.weight"], converted["model.embed_tokens.weight"])
    assert not any(key.startswith("projector.") or "lora_" in key for key in merged)


def test_convert_official_rejects_unknown_keys():
    checkpoint = _fake_official_checkpoint()
    checkpoint["model"]["mystery.weight"] = torch.zeros(1)
    with pytest.raises(ConverterError, match="mystery.weight"):
        convert_official(checkpoint)


def test_plugin_registers_the_demo_model_and_converter():
    import attnzoo

    assert "quatrope-llama-tiny" in attnzoo.list_models("quatrope*")
    card = attnzoo.info("quatrope-llama-tiny")
    assert card.family == "quatrope" and card.task == "text-generation"
    model = attnzoo.load("quatrope-llama-tiny", pretrained=False)
    assert attnzoo_spatial.is_patched(model)
    input_ids = torch.randint(0, card.input.vocab_size, (1, *card.input.shape))
    positions = torch.zeros(1, card.input.shape[0], 3)
    positions[0, 4:10] = torch.randn(6, 3)
    with torch.no_grad():
        assert model(input_ids, object_positions=positions).logits.shape == (1, card.input.shape[0], 256)


def test_plugin_and_package_import_without_torch():
    import subprocess
    import sys

    code = "import sys, attnzoo_spatial, attnzoo_spatial.plugin; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_object_positions_must_match_the_batch():
    import attnzoo

    model = attnzoo.load("quatrope-llama-tiny", pretrained=False)
    ids = torch.randint(0, 256, (1, 12))
    with pytest.raises(ValueError, match="object_positions has batch 2, but the inputs have batch 1"):
        model(ids, object_positions=torch.randn(2, 5, 3))
