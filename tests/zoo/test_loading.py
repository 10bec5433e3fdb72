"""zoo.load: Hub downloads through the local stand-in, local files, converters, and every failure mode."""

from __future__ import annotations

import hashlib

import attnzoo as zoo
import attnzoo.discovery as discovery
import pytest
import torch
import toyplugin
from safetensors.torch import save, save_file


def _toy_state(width=8, num_classes=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        "fc1.weight": torch.randn(width, 4, generator=generator),
        "fc1.bias": torch.randn(width, generator=generator),
        "fc2.weight": torch.randn(num_classes, width, generator=generator),
        "fc2.bias": torch.randn(num_classes, generator=generator),
    }


def _publish(hub, blob: bytes, pin_sha: str | None = "auto", revision: str = "commit"):
    """Put ``blob`` on the stand-in and point the toy spec at it; returns the commit id."""
    commit = hub.state.put(toyplugin.TOY_REPO, {"model.safetensors": blob})
    sha = hashlib.sha256(blob).hexdigest() if pin_sha == "auto" else pin_sha
    toyplugin.SPEC["value"] = toyplugin.toy_spec(
        sha256=sha, revision=commit if revision == "commit" else revision
    )
    discovery.reset()
    return commit


@pytest.fixture(autouse=True)
def _restore_toy_spec():
    yield
    toyplugin.SPEC["value"] = toyplugin.toy_spec()
    discovery.reset()


def test_pretrained_from_hub_equals_published_weights(hub, toy_zoo):
    state = _toy_state()
    commit = _publish(hub, save(state))
    model = zoo.load("toy-mlp")
    for key, value in state.items():
        torch.testing.assert_close(model.state_dict()[key], value)
    assert not model.training
    assert torch.equal(model.offset, torch.arange(4.0))  # the non-persistent buffer was built for real
    assert ("GET", f"/{toyplugin.TOY_REPO}/resolve/{commit}/model.safetensors") in hub.state.requests
    out = model(torch.randn(2, 4))
    assert out.shape == (2, 3)


def test_tagged_name_and_dtype(hub, toy_zoo):
    _publish(hub, save(_toy_state()))
    model = zoo.load("toy-mlp.v1", dtype=torch.float64)
    assert model.fc1.weight.dtype == torch.float64
    with pytest.raises(zoo.WeightsUnavailableError, match="no weights tagged 'v2'; it has: v1"):
        zoo.load("toy-mlp.v2")


def test_parameters_are_not_initialised_before_assignment(hub, toy_zoo, monkeypatch):
    _publish(hub, save(_toy_state()))
    calls = []
    original = torch.nn.Linear.reset_parameters

    def spy(self):
        calls.append(self.weight.device.type)
        original(self)

    monkeypatch.setattr(torch.nn.Linear, "reset_parameters", spy)
    zoo.load("toy-mlp")
    assert calls and set(calls) == {"meta"}  # initialisation only ever touched meta tensors
    calls.clear()
    zoo.load("toy-mlp", pretrained=False)
    assert set(calls) == {"cpu"}


def test_cache_then_offline(hub, toy_zoo, monkeypatch):
    import huggingface_hub.constants as constants

    _publish(hub, save(_toy_state()))
    zoo.load("toy-mlp")
    fetched = len(hub.state.requests)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    zoo.load("toy-mlp")  # from the cache, no request
    assert len(hub.state.requests) == fetched


def test_offline_without_cache_says_how_to_proceed(hub, toy_zoo, monkeypatch):
    import huggingface_hub.constants as constants

    _publish(hub, save(_toy_state()))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(zoo.WeightsUnavailableError, match="weights=PATH"):
        zoo.load("toy-mlp")


def test_unreachable_hub(toy_zoo, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", "/nonexistent-cache-dir-for-tests")
    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", lambda seconds: None)  # skip the back-off
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    toyplugin.SPEC["value"] = toyplugin.toy_spec(sha256="0" * 64)
    discovery.reset()
    with pytest.raises(zoo.WeightsUnavailableError, match="cannot fetch attnzoo-test/toy-mlp@main"):
        zoo.load("toy-mlp")


def test_hash_mismatch(hub, toy_zoo):
    _publish(hub, save(_toy_state()), pin_sha="f" * 64)
    with pytest.raises(zoo.HashMismatchError, match="the entry pins ffff"):
        zoo.load("toy-mlp")


def test_unpublished_entry_is_refused_before_any_request(hub, toy_zoo):
    _publish(hub, save(_toy_state()), pin_sha=None, revision="main")
    before = len(hub.state.requests)
    with pytest.raises(zoo.WeightsUnavailableError, match="announced but not yet published"):
        zoo.load("toy-mlp")
    assert len(hub.state.requests) == before
    assert "toy-mlp" not in zoo.list_models(pretrained=True)


def test_truncated_local_file(tmp_path, toy_zoo):
    path = tmp_path / "model.safetensors"
    path.write_bytes(save(_toy_state())[:100])
    with pytest.raises(zoo.CorruptWeightsError, match="truncated"):
        zoo.load("toy-mlp", weights=path)


def test_missing_unexpected_and_mis_shaped_keys_are_listed(tmp_path, toy_zoo):
    state = _toy_state()
    del state["fc2.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["fc1.bias"] = torch.zeros(5)
    save_file(state, tmp_path / "bad.safetensors")
    with pytest.raises(zoo.StateDictMismatchError) as info:
        zoo.load("toy-mlp", weights=tmp_path / "bad.safetensors")
    message = str(info.value)
    assert "missing: fc2.bias" in message
    assert "unexpected: extra.weight" in message
    assert "fc1.bias: model (8,) vs weights (5,)" in message
    assert info.value.missing == ["fc2.bias"]


def test_wrong_architecture(tmp_path, toy_zoo):
    save_file(_toy_state(width=16), tmp_path / "wide.safetensors")
    with pytest.raises(zoo.StateDictMismatchError, match="different architecture"):
        zoo.load("toy-mlp", weights=tmp_path / "wide.safetensors")
    model = zoo.load("toy-mlp-wide", weights=tmp_path / "wide.safetensors")  # the right one loads
    assert model.fc1.weight.shape == (16, 4)


def test_local_folder_and_config_override(tmp_path, toy_zoo):
    save_file(_toy_state(num_classes=5), tmp_path / "model.safetensors")
    model = zoo.load("toy-mlp", weights=tmp_path, num_classes=5)
    assert model(torch.randn(1, 4)).shape == (1, 5)


def test_official_checkpoint_goes_through_the_converter(tmp_path, toy_zoo):
    state = _toy_state()
    official = {"model": {k.replace("fc1", "layer1").replace("fc2", "layer2"): v for k, v in state.items()}}
    torch.save(official, tmp_path / "official.pth")
    model = zoo.load("toy-mlp", weights=tmp_path / "official.pth")
    torch.testing.assert_close(model.fc2.weight, state["fc2.weight"])


def test_pickles_with_objects_are_refused_on_the_load_path(tmp_path, toy_zoo):
    torch.save({"model": _toy_state(), "args": _Opaque()}, tmp_path / "with-object.pth")
    with pytest.raises(zoo.CorruptWeightsError, match="attnzoo convert"):
        zoo.load("toy-mlp", weights=tmp_path / "with-object.pth")


class _Opaque:
    pass


def test_no_weights_without_pretrained_entry(toy_zoo):
    with pytest.raises(zoo.WeightsUnavailableError, match="pretrained=False"):
        zoo.load("toy-mlp-wide")
    assert zoo.load("toy-mlp-wide", pretrained=False).fc1.weight.shape == (16, 4)


def test_tied_parameters_load_from_one_stored_tensor(tmp_path, monkeypatch):
    from attnzoo.loading import build, check_state_dict, parameters_on_meta  # noqa: F401

    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(5, 3)
            self.head = torch.nn.Linear(3, 5, bias=False)
            self.head.weight = self.embed.weight

    with parameters_on_meta():
        model = Tied()
    state = {"embed.weight": torch.randn(5, 3)}
    check_state_dict(model, state, "tied")
    assert torch.equal(state["head.weight"], state["embed.weight"])


def test_zoo_load_keeps_tied_parameters_one_object(tmp_path, toy_zoo, monkeypatch):
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(5, 3)
            self.head = torch.nn.Linear(3, 5, bias=False)
            self.head.weight = self.embed.weight

    monkeypatch.setattr(toyplugin, "build_toy", lambda **config: Tied(), raising=True)
    save_file({"embed.weight": torch.randn(5, 3)}, tmp_path / "tied.safetensors")
    model = zoo.load("toy-mlp", weights=tmp_path / "tied.safetensors")
    assert model.head.weight is model.embed.weight


def test_unknown_tag_without_pretrained_is_a_zoo_error(toy_zoo):
    with pytest.raises(zoo.WeightsUnavailableError, match="no weights tagged 'nope'"):
        zoo.load("toy-mlp.nope", pretrained=False)
    assert zoo.load("toy-mlp.v1", pretrained=False).fc1.weight.shape == (8, 4)


def test_damaged_pickle_is_a_corrupt_weights_error(tmp_path, toy_zoo):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"junk\n")
    with pytest.raises(zoo.CorruptWeightsError, match="cannot be read as a PyTorch checkpoint"):
        zoo.load("toy-mlp", weights=path)


def test_config_key_the_builder_does_not_take(toy_zoo):
    with pytest.raises(zoo.ZooError, match="toy-mlp does not take that config key.*'img_size'"):
        zoo.load("toy-mlp", pretrained=False, img_size=256)
