"""Model cards: Hub front matter generated from the zoo's ModelCard."""

from __future__ import annotations

import dataclasses

import attnzoo
import pytest
import yaml
from attnzoo import HubFile, InputSpec, ModelCard, Paper, WeightEntry
from attnzoo_tools.card import front_matter, hub_license, render_card, split_card


def _card(**changes) -> ModelCard:
    base = ModelCard(
        name="demo-s",
        aliases=("demo_small",),
        package="attnzoo-demo",
        version="0.3.0",
        family="demo",
        task="image-classification",
        paper=Paper("Demo: A Paper", arxiv="2401.01234", code_url="https://github.com/demo/demo"),
        license="Apache-2.0",
        config={"num_classes": 1000, "depths": (2, 2, 6, 2)},
        weights=(
            WeightEntry(
                tag="in22k-ft-in1k",
                license="CC-BY-NC-4.0",
                origin="https://example.org/demo_s.pth",
                sha256="ab" * 32,
                hub=HubFile("attnzoo/demo-s", "model.safetensors", "c" * 40),
                metrics={"top1": 84.2, "top5": 96.9},
            ),
        ),
        input=InputSpec("image", (3, 224, 224), preprocess={"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}),
        metrics={"top1": 83.0, "params_m": 25.5, "gflops": 4.5, "dataset": "imagenet-1k"},
        description="A demo model.",
        builder="demo:demo_small",
    )
    return dataclasses.replace(base, **changes)


def test_front_matter_follows_hub_conventions():
    card = _card()
    meta, body = split_card(
        render_card(card, sha256="ef" * 32, source={"file": "demo_s.pth", "sha256": "01" * 32})
    )
    assert meta["license"] == "cc-by-nc-4.0"  # the weights' licence, not the code's
    assert meta["library_name"] == "attnzoo"
    assert meta["pipeline_tag"] == "image-classification"
    assert "arxiv:2401.01234" in meta["tags"] and "demo" in meta["tags"]
    assert meta["datasets"] == ["imagenet-1k", "imagenet-21k"]
    (result,) = meta["model-index"][0]["results"]
    assert meta["model-index"][0]["name"] == "demo-s"
    metrics = {m["name"]: m["value"] for m in result["metrics"]}
    assert metrics == {"Top-1 accuracy": 84.2, "Top-5 accuracy": 96.9}  # the entry's, over the spec's
    assert result["dataset"]["type"] == "imagenet-1k"
    assert result["source"]["url"] == "https://arxiv.org/abs/2401.01234"
    assert all(m["type"] == "accuracy" for m in result["metrics"])
    assert "params_m" not in str(meta)
    assert 'zoo.load("demo-s.in22k-ft-in1k")' in body
    assert "ef" * 32 in body and "01" * 32 in body and "demo_s.pth" in body
    assert "| params_m | 25.5 |" in body


def test_metric_source_and_other_licences():
    card = _card(
        weights=(),
        license="Research-only licence v2",
        metrics={
            "test_nll": 1.23,
            "source": {"name": "attnzoo training run", "url": "https://example.org/run"},
        },
        task="symbolic-music-generation",
    )
    meta = front_matter(card)
    assert meta["license"] == "other" and meta["license_name"] == "research-only-licence-v2"
    result = meta["model-index"][0]["results"][0]
    assert result["source"] == {"name": "attnzoo training run", "url": "https://example.org/run"}
    assert result["metrics"] == [{"type": "nll", "name": "Test negative log-likelihood", "value": 1.23}]
    assert "datasets" not in meta


def test_no_metrics_no_model_index_and_unknown_task():
    meta = front_matter(_card(metrics={}, weights=(), task="point-cloud-classification"))
    assert "model-index" not in meta and "pipeline_tag" not in meta


@pytest.mark.parametrize(
    "licence, expected",
    [("MIT", "mit"), ("Apache-2.0", "apache-2.0"), ("cc-by-nc-sa-4.0", "cc-by-nc-sa-4.0")],
)
def test_hub_license_ids(licence, expected):
    assert hub_license(licence) == (expected, {})


def test_integration_snippets():
    text = render_card(_card(), integrations={"timm": "demo_small.in1k", "transformers": "demo/demo-s-hf"})
    assert 'timm.create_model("demo_small.in1k", pretrained=True)' in text
    assert 'AutoModel.from_pretrained("demo/demo-s-hf")' in text
    assert "timm" not in render_card(_card()).split("---", 2)[2]
    registered = render_card(_card(), integrations={"timm": "attnzoo_vision.biformer:biformer_small.in1k"})
    assert "import attnzoo_vision.biformer  # registers the model with timm" in registered
    assert 'timm.create_model("biformer_small.in1k", pretrained=True)' in registered


def test_tokens_input_snippet():
    card = _card(input=InputSpec("tokens", (128,), vocab_size=512), task="text-generation")
    assert "torch.randint(0, 512, (1, 128))" in render_card(card)
    assert front_matter(card)["pipeline_tag"] == "text-generation"


def test_every_registered_model_gets_a_parsable_card(toy_zoo):
    names = attnzoo.list_models()
    assert "toy-mlp" in names
    for name in names:
        card = attnzoo.info(name)
        meta, body = split_card(render_card(card))
        assert meta["library_name"] == "attnzoo", name
        assert {"license", "tags"} <= set(meta), name
        assert f'zoo.load("{name}' in body, name
        if card.paper.arxiv:
            assert f"arxiv:{card.paper.arxiv}" in meta["tags"], name
        for result in meta.get("model-index", [{}])[0].get("results", []):
            assert result["source"]["name"], name


def test_card_command(zoo_cli, tmp_path):
    result = zoo_cli("card", "toy-mlp")
    assert result.exit_code == 0
    assert result.output.rstrip("\n") == render_card(attnzoo.info("toy-mlp")).rstrip("\n")
    out = tmp_path / "README.md"
    assert zoo_cli("card", "toy-mlp.v1", "-o", out).exit_code == 0
    assert yaml.safe_load(out.read_text().split("---")[1])["license"] == "mit"


def test_split_card_rejects_cards_without_front_matter():
    with pytest.raises(ValueError, match="front matter"):
        split_card("# just markdown\n")
