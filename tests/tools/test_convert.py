"""attnzoo convert: official checkpoints in, safetensors release folders out."""

from __future__ import annotations

import hashlib
import json
import os

import attnzoo as zoo
import torch
from attnzoo_tools.card import split_card
from attnzoo_tools.convert import READER_RESTRICTED, READER_SAFETENSORS, READER_WEIGHTS_ONLY, convert
from foreign import Malicious, save_with_foreign_module
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from toy_checkpoints import official_toy_state

RELEASE = {"model.safetensors", "model.safetensors.sha256", "config.json", "README.md"}


def _renamed(state):
    return {k.replace("layer1", "fc1").replace("layer2", "fc2"): v for k, v in state.items()}


def test_convert_official_pth(zoo_cli, official_pth, tmp_path):
    out = tmp_path / "release"
    result = zoo_cli("convert", "toy-mlp", official_pth, "-o", out)
    assert result.exit_code == 0, result.output

    assert {p.name for p in out.iterdir()} == RELEASE
    sha = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    assert (out / "model.safetensors.sha256").read_text() == f"{sha}  model.safetensors\n"
    assert f"sha256: {sha}" in result.output

    stored = load_file(out / "model.safetensors")
    expected = _renamed(official_toy_state())
    assert stored.keys() == expected.keys()
    assert all(torch.equal(stored[k], expected[k]) for k in expected)
    with safe_open(out / "model.safetensors", "pt") as handle:
        assert handle.metadata()["attnzoo_model"] == "toy-mlp"

    record = json.loads((out / "config.json").read_text())
    assert record["model"] == "toy-mlp" and record["tag"] == "v1"
    assert record["config"] == {"width": 8, "num_classes": 3}
    assert record["zoo_version"] == zoo.__version__
    assert record["source"]["file"] == official_pth.name
    assert record["source"]["sha256"] == hashlib.sha256(official_pth.read_bytes()).hexdigest()
    assert record["source"]["reader"] == READER_WEIGHTS_ONLY
    assert record["weights"]["sha256"] == sha
    assert record["weights"]["parameters"] == sum(v.numel() for v in expected.values())

    meta, body = split_card((out / "README.md").read_text())
    assert meta["library_name"] == "attnzoo" and meta["license"] == "mit"
    assert sha in body and official_pth.name in body

    # the folder loads through the zoo's own path and computes what the official weights define
    model = zoo.load("toy-mlp", weights=out)
    x = torch.randn(2, 4)
    hidden = torch.relu((x + torch.arange(4.0)) @ expected["fc1.weight"].T + expected["fc1.bias"])
    torch.testing.assert_close(model(x), hidden @ expected["fc2.weight"].T + expected["fc2.bias"])


def test_pickle_with_foreign_class_uses_the_restricted_unpickler(zoo_cli, tmp_path):
    def build(module):
        return {"model": official_toy_state(), "args": module.TrainArgs()}

    path, module_name = save_with_foreign_module(tmp_path, build, "with_args.pth")
    out = tmp_path / "release"
    result = zoo_cli("convert", "toy-mlp", path, "-o", out)
    assert result.exit_code == 0, result.output
    assert f"{module_name}.TrainArgs" in result.output
    record = json.loads((out / "config.json").read_text())
    assert record["source"]["reader"] == READER_RESTRICTED
    assert record["source"]["stand_ins"] == [f"{module_name}.TrainArgs"]
    stored = load_file(out / "model.safetensors")
    assert all(torch.equal(stored[k], v) for k, v in _renamed(official_toy_state()).items())


def test_whole_model_object_checkpoint_is_converted_without_its_class(objects_zoo, zoo_cli, tmp_path):
    official = {}

    def build(module):
        net = module.ToyNet()
        official.update(net.state_dict())
        return {"model": net.half(), "epoch": 3, "args": module.TrainArgs()}

    path, module_name = save_with_foreign_module(tmp_path, build, "yolo_style.pt")
    out = tmp_path / "release"
    result = zoo_cli("convert", "toy-objects", path, "-o", out, "--tag", "coco")
    assert result.exit_code == 0, result.output
    assert f"{module_name}.ToyNet" in result.output

    stored = load_file(out / "model.safetensors")
    for key, value in _renamed(official).items():
        assert stored[key].dtype == torch.float32  # cast to the model's dtype
        assert torch.equal(stored[key], value.half().float())
    record = json.loads((out / "config.json").read_text())
    assert record["tag"] == "coco" and record["weights"]["dtypes"] == ["float32"]
    assert zoo.load("toy-objects", weights=out)(torch.randn(1, 4)).shape == (1, 3)


def test_keep_dtype(objects_zoo, zoo_cli, tmp_path):
    path, _ = save_with_foreign_module(tmp_path, lambda m: {"model": m.ToyNet().half()}, "half.pt")
    out = tmp_path / "release"
    assert zoo_cli("convert", "toy-objects", path, "-o", out, "--keep-dtype").exit_code == 0
    assert {v.dtype for v in load_file(out / "model.safetensors").values()} == {torch.float16}


def test_malicious_pickle_is_refused(zoo_cli, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": official_toy_state(), "hook": Malicious(os.system, f"touch {marker}")}, path)
    out = tmp_path / "release"
    result = zoo_cli("convert", "toy-mlp", path, "-o", out)
    assert result.exit_code == 1
    assert "system" in result.output and "allow-list" in result.output and "refusing" in result.output
    assert not marker.exists()
    assert not (out / "model.safetensors").exists()


def test_config_override_and_mismatch(zoo_cli, tmp_path):
    path = tmp_path / "wide.pth"
    torch.save({"model": official_toy_state(width=16)}, path)

    refused = zoo_cli("convert", "toy-mlp", path, "-o", tmp_path / "a")
    assert refused.exit_code == 1
    assert (
        "shape mismatch" in refused.output and "fc1.weight: model (8, 4) vs weights (16, 4)" in refused.output
    )

    out = tmp_path / "b"
    result = zoo_cli("convert", "toy-mlp", path, "-o", out, "--set", "width=16")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "config.json").read_text())
    assert record["config_overrides"] == {"width": 16}
    assert zoo.load("toy-mlp", weights=out, width=16).fc1.weight.shape == (16, 4)

    bad = zoo_cli("convert", "toy-mlp", path, "-o", tmp_path / "c", "--set", "width")
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.output

    conflict = zoo_cli("convert", "toy-mlp.v1", path, "-o", tmp_path / "d", "--tag", "v2")
    assert conflict.exit_code == 1 and "names tag 'v1' but --tag says 'v2'" in conflict.output


def test_safetensors_source_and_refusals(zoo_cli, tmp_path, official_pth):
    source = tmp_path / "official.safetensors"
    save_file(_renamed(official_toy_state()), source)  # already in the zoo's layout: the toy converter
    # expects {'model': ...}, so this goes through a family without that wrapper only if it fits.
    result = zoo_cli("convert", "toy-mlp", source, "-o", tmp_path / "st")
    assert result.exit_code == 1 and "converter" in result.output

    out = tmp_path / "release"
    assert zoo_cli("convert", "toy-mlp", official_pth, "-o", out).exit_code == 0
    again = zoo_cli("convert", "toy-mlp", official_pth, "-o", out)
    assert again.exit_code == 1 and "--overwrite" in again.output
    assert zoo_cli("convert", "toy-mlp", official_pth, "-o", out, "--overwrite").exit_code == 0

    odd = tmp_path / "weights.npz"
    odd.write_bytes(b"not a checkpoint")
    refused = zoo_cli("convert", "toy-mlp", odd, "-o", tmp_path / "odd")
    assert refused.exit_code == 1 and "unknown checkpoint format '.npz'" in refused.output

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(official_pth.read_bytes()[:100])
    refused = zoo_cli("convert", "toy-mlp", truncated, "-o", tmp_path / "trunc")
    assert refused.exit_code == 1 and "truncated" in refused.output


def test_safetensors_source_without_converter(objects_zoo, tmp_path):
    """A family without a converter takes a checkpoint already in the zoo's layout, checked strictly."""
    import attnzoo.discovery as discovery

    discovery.registry().converters.pop("toy")
    source = tmp_path / "official.safetensors"
    save_file(_renamed(official_toy_state()), source)
    result = convert("toy-mlp", source, tmp_path / "release")
    assert result.reader == READER_SAFETENSORS
    stored = load_file(tmp_path / "release" / "model.safetensors")
    assert all(torch.equal(stored[k], v) for k, v in _renamed(official_toy_state()).items())


def test_tied_weights_are_stored_once_and_load_back(objects_zoo, zoo_cli, tmp_path):
    embedding = torch.randn(5, 4)
    source = tmp_path / "tied.pth"
    torch.save({"embed.weight": embedding, "head.weight": embedding}, source)  # saved tied, one storage
    out = tmp_path / "release"
    result = zoo_cli("convert", "toy-tied", source, "-o", out, "--tag", "v0")
    assert result.exit_code == 0, result.output
    assert list(load_file(out / "model.safetensors")) == ["embed.weight"]
    model = zoo.load("toy-tied", weights=out)
    assert torch.equal(model.embed.weight, embedding) and torch.equal(model.head.weight, embedding)
    verified = zoo_cli("verify", out, "toy-tied", "--source", source)
    assert verified.exit_code == 0, verified.output
    assert "outputs [(1, 6, 5)]" in verified.output
