"""attnzoo publish, end to end against the local Hub stand-in, read back with zoo.load."""

from __future__ import annotations

import dataclasses
import re

import attnzoo as zoo
import attnzoo.discovery as discovery
import pytest
import torch
import toyplugin
from attnzoo import HubFile, WeightEntry
from attnzoo_tools.publish import weight_entry_code
from safetensors.torch import load_file

RELEASE = {"model.safetensors", "model.safetensors.sha256", "config.json", "README.md"}


@pytest.fixture
def release(zoo_cli, official_pth, tmp_path):
    out = tmp_path / "release"
    assert zoo_cli("convert", "toy-mlp", official_pth, "-o", out).exit_code == 0
    return out


@pytest.fixture
def restore_toy_spec():
    yield
    toyplugin.SPEC["value"] = toyplugin.toy_spec()
    discovery.reset()


def _printed_entry(output: str) -> WeightEntry:
    code = output.split("weight entry to paste into the plugin's registry:\n", 1)[1]
    return eval(code, {"WeightEntry": WeightEntry, "HubFile": HubFile})  # the text a maintainer pastes


def _use_entry(entry: WeightEntry) -> None:
    toyplugin.SPEC["value"] = dataclasses.replace(toyplugin.toy_spec(), weights=(entry,))
    discovery.reset()


def test_publish_then_load_pinned(zoo_cli, hub, release, restore_toy_spec, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    result = zoo_cli("publish", release, "--repo-id", "attnzoo-test/toy-release")
    assert result.exit_code == 0, result.output

    commit = re.search(r"^commit: ([0-9a-f]{40})$", result.output, re.M).group(1)
    assert set(hub.state.repos["attnzoo-test/toy-release"][commit]) == RELEASE
    for name in RELEASE:
        assert hub.state.repos["attnzoo-test/toy-release"][commit][name] == (release / name).read_bytes()

    entry = _printed_entry(result.output)
    sha = (release / "model.safetensors.sha256").read_text().split()[0]
    assert entry.hub == HubFile("attnzoo-test/toy-release", "model.safetensors", commit)
    assert entry.sha256 == sha and entry.tag == "v1" and entry.license == "MIT"

    _use_entry(entry)
    model = zoo.load("toy-mlp.v1")
    assert ("GET", f"/attnzoo-test/toy-release/resolve/{commit}/model.safetensors") in hub.state.requests
    stored = load_file(release / "model.safetensors")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in stored.items())


def test_publish_to_a_branch(zoo_cli, hub, release, restore_toy_spec):
    result = zoo_cli("publish", release, "--repo-id", "attnzoo-test/toy-release", "--revision", "v1-release")
    assert result.exit_code == 0, result.output
    entry = _printed_entry(result.output)
    revisions = hub.state.repos["attnzoo-test/toy-release"]
    assert revisions["v1-release"] is revisions[entry.hub.revision]
    assert "model.safetensors" not in revisions.get("main", {})
    _use_entry(entry)
    assert zoo.load("toy-mlp")(torch.randn(1, 4)).shape == (1, 3)

    again = zoo_cli("publish", release, "--repo-id", "attnzoo-test/toy-release", "--revision", "v1-release")
    assert again.exit_code == 0, again.output  # existing repo and branch are fine


def test_dry_run_uploads_nothing(zoo_cli, hub, release):
    result = zoo_cli("publish", release, "--repo-id", "attnzoo-test/toy-release", "--dry-run")
    assert result.exit_code == 0, result.output
    assert hub.state.requests == [] and hub.state.repos == {}
    assert "would upload to attnzoo-test/toy-release@main" in result.output
    entry = _printed_entry(result.output)
    assert entry.sha256 == (release / "model.safetensors.sha256").read_text().split()[0]
    assert entry.hub.revision.startswith("<commit")


def test_publish_refuses_bad_input(zoo_cli, hub, release):
    bad_repo = zoo_cli("publish", release, "--repo-id", "no-org")
    assert bad_repo.exit_code == 1 and "ORG/NAME" in bad_repo.output

    (release / "README.md").unlink()
    missing = zoo_cli("publish", release, "--repo-id", "attnzoo-test/x")
    assert missing.exit_code == 1 and "README.md" in missing.output

    (release / "model.safetensors").write_bytes(b"changed")
    changed = zoo_cli("publish", release, "--repo-id", "attnzoo-test/x")
    assert changed.exit_code == 1 and "changed after `attnzoo convert`" in changed.output
    assert hub.state.requests == []


def test_hub_rejecting_the_card_metadata_is_reported(zoo_cli, hub, release):
    (release / "README.md").write_text("---\nlicense: [mit\n---\n# broken\n")
    result = zoo_cli("publish", release, "--repo-id", "attnzoo-test/toy-release")
    assert result.exit_code == 1
    assert "the Hub refused the upload" in result.output and "Invalid metadata in README.md" in result.output
    assert not any("/commit/" in path for _, path in hub.state.requests)


def test_weight_entry_code_round_trips():
    entry = WeightEntry(
        tag="in22k",
        license="Apache-2.0",
        origin="https://example.org/ckpt.pth",
        sha256="ab" * 32,
        hub=HubFile("org/name", "model.safetensors", "c" * 40),
        metrics={"top1": 85.1, "dataset": "imagenet-1k"},
        config={"num_classes": 21841, "depths": [2, 2]},
        notes="it's fine",
    )
    rebuilt = eval(weight_entry_code(entry), {"WeightEntry": WeightEntry, "HubFile": HubFile})
    assert rebuilt == entry
