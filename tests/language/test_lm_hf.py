"""transformers integration: Auto classes, safetensors round trip, tied weights, cached generation."""

from __future__ import annotations

import pytest
import torch
from attnzoo_language.modeling import MixerLMForCausalLM, MixerLMModel
from lm_helpers import ALL_MIXERS, EVERY_MIXER_SPEC, small_config
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, DynamicCache, GenerationMixin


def model_for(mixers: str, seed: int = 0, **overrides) -> MixerLMForCausalLM:
    torch.manual_seed(seed)
    model = MixerLMForCausalLM(small_config(mixers, **overrides))
    with torch.no_grad():  # non-default norms and biases, so a load that skips them would show
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.normal_(1.0 if "norm" in name else 0.0, 0.2)
    return model.eval()


def test_auto_classes_resolve_the_mixer_lm(tmp_path):
    config = small_config("grassmann,softmax", num_hidden_layers=2)
    assert isinstance(AutoModelForCausalLM.from_config(config), MixerLMForCausalLM)
    assert isinstance(AutoModel.from_config(config), MixerLMModel)
    assert isinstance(MixerLMForCausalLM(config), GenerationMixin)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is type(config) and loaded.mixers == ["grassmann", "softmax"]


def test_output_head_is_tied_to_the_embedding():
    model = model_for("softmax", num_hidden_layers=1)
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_save_and_from_pretrained_round_trip_every_mixer(tmp_path):
    model = model_for(EVERY_MIXER_SPEC)
    ids = torch.randint(0, 50, (2, 16))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, MixerLMForCausalLM) and loaded.config.mixers == list(ALL_MIXERS)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)


def test_loss_is_shifted_cross_entropy_and_moh_balance_only_in_training():
    model = model_for("moh,softmax")
    ids = torch.randint(0, 50, (2, 10))
    out = model(ids, labels=ids)
    expected = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 50), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    assert out.aux_loss is not None
    model.train()
    trained = model(ids, labels=ids)
    torch.testing.assert_close(trained.loss, expected + model.config.moh_aux_loss_coef * trained.aux_loss)


def test_whole_model_is_causal_for_every_mixer():
    model = model_for(EVERY_MIXER_SPEC)
    ids = torch.randint(0, 50, (2, 20))
    changed = ids.clone()
    changed[:, 12:] = (changed[:, 12:] + 1) % 50
    with torch.no_grad():
        before, after = model(ids, use_cache=False).logits, model(changed, use_cache=False).logits
    torch.testing.assert_close(before[:, :12], after[:, :12])
    assert not torch.allclose(before[:, 12:], after[:, 12:])


@pytest.mark.parametrize("mixers", [*ALL_MIXERS, "grassmann,softmax", "mlp,moh"])
def test_greedy_generate_with_cache_equals_the_full_forward(mixers):
    model = model_for(mixers, num_hidden_layers=2)
    prompt = torch.randint(0, 50, (2, 5))
    generated = model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=8,
        do_sample=False,
        pad_token_id=0,
        output_logits=True,
        return_dict_in_generate=True,
    )
    tokens = generated.sequences
    with torch.no_grad():
        full = model(tokens, use_cache=False).logits
    # each generated token is the argmax of the full forward at the step before it
    torch.testing.assert_close(tokens[:, 5:], full[:, 4:-1].argmax(-1))
    cached_logits = torch.stack(generated.logits, dim=1)
    torch.testing.assert_close(cached_logits, full[:, 4:-1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mixers", [EVERY_MIXER_SPEC])
def test_chunked_prefill_with_cache_equals_the_full_forward(mixers):
    model = model_for(mixers)
    ids = torch.randint(0, 50, (2, 12))
    with torch.no_grad():
        full = model(ids, use_cache=False).logits
        cache = DynamicCache()
        first = model(ids[:, :5], cache=cache, use_cache=True)
        second = model(ids[:, 5:9], cache=first.cache, use_cache=True)
        third = model(ids[:, 9:], cache=second.cache, use_cache=True)
    assert third.cache.get_seq_length() == 12
    torch.testing.assert_close(
        torch.cat([first.logits, second.logits, third.logits], 1), full, rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("mixers", ["softmax", "moh", "taylor", "elementwise"])
def test_left_padding_leaves_the_real_tokens_unchanged(mixers):
    # Position ids restart at the first real token, as transformers' generate builds them.
    model = model_for(mixers, num_hidden_layers=2)
    ids = torch.randint(1, 50, (1, 6))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], 1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 6, dtype=torch.long)], 1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        alone = model(ids, use_cache=False).logits
        batched = model(padded, attention_mask=mask, position_ids=positions, use_cache=False).logits
    torch.testing.assert_close(batched[:, 3:], alone, rtol=1e-5, atol=1e-5)


def test_bad_inputs_raise_clear_errors():
    model = model_for("softmax", num_hidden_layers=1)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="exactly one of"):
        model()
    with pytest.raises(ValueError, match=r"\(batch, length\)"):
        model(torch.zeros(5, dtype=torch.long))
