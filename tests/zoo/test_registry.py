"""The torch-free half of the API: listing, describing, resolving names, plugin isolation."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import attnzoo as zoo
import pytest


def test_listing_imports_neither_torch_nor_model_code():
    code = textwrap.dedent(
        """
        import sys, json, attnzoo
        names = attnzoo.list_models()
        attnzoo.info(names[0]) if names else None
        heavy = [m for m in ("torch", "timm", "transformers", "safetensors", "huggingface_hub") if m in sys.modules]
        print(json.dumps({"names": names, "heavy": heavy}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["heavy"] == []


def test_list_filters_and_patterns(toy_zoo):
    assert {"toy-mlp", "toy-mlp-wide"} <= set(zoo.list_models())
    assert zoo.list_models("toy-*") == ["toy-mlp", "toy-mlp-wide"]
    assert zoo.list_models("toy-*", pretrained=True) == ["toy-mlp"]
    assert zoo.list_models("toy-*", pretrained=False) == ["toy-mlp-wide"]
    assert zoo.list_models("toy_*") == ["toy-mlp"]  # aliases match patterns too
    assert zoo.list_models(task="tabular-classification") == ["toy-mlp", "toy-mlp-wide"]
    assert zoo.list_models("toy-*", package="attnzoo-vision") == []
    assert zoo.list_models("toy-*", package="<in-process toy>") == ["toy-mlp", "toy-mlp-wide"]


def test_info_card(toy_zoo):
    card = zoo.info("toy_mlp")  # through the alias
    assert card.name == "toy-mlp"
    assert card.aliases == ("toy_mlp",)
    assert card.family == "toy"
    assert card.paper.arxiv == "0000.00000"
    data = card.to_dict()
    json.dumps(data)  # JSON-ready
    assert data["weights"][0]["tag"] == "v1"
    assert data["weights"][0]["source"] == "hf://attnzoo-test/toy-mlp@main/model.safetensors"
    assert data["config"] == {"width": 8, "num_classes": 3}


def test_tag_selects_weights_and_unknown_names_suggest(toy_zoo):
    from attnzoo.registry import resolve

    spec, tag = resolve("toy-mlp.v1")
    assert (spec.name, tag) == ("toy-mlp", "v1")
    with pytest.raises(zoo.UnknownModelError, match="closest matches: toy-mlp"):
        zoo.info("toy-mpl")
    with pytest.raises(zoo.UnknownModelError, match="unknown model 'nothing-like-it'"):
        zoo.info("nothing-like-it")
    with pytest.raises(zoo.UnknownModelError, match="no weights tagged 'v9'; it has: v1"):
        zoo.info("toy-mlp.v9")
    with pytest.raises(zoo.UnknownModelError) as raised:
        zoo.info("toy-mpl")
    suggested = str(raised.value).split("closest matches: ")[1].split(" (")[0].split(", ")
    assert len(suggested) == len(set(suggested))  # an alias and its model are one suggestion


def _write_dist(site, dist: str, module: str, source: str, entry_name: str) -> None:
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-0.9.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.9\n")
    (info / "entry_points.txt").write_text(f"[attnzoo]\n{entry_name} = {module}\n")


def test_broken_and_duplicate_plugins_are_reported_not_fatal(tmp_path):
    _write_dist(tmp_path, "broken-plugin", "broken_plugin", "raise ImportError('needs libfoo')\n", "broken")
    dup_source = """
        from attnzoo import hookimpl, ModelSpec, Paper

        @hookimpl
        def register_models(register):
            register(ModelSpec(name={name!r}, builder="x:y", family="f", task="t",
                               paper=Paper(title="p"), license="MIT"))
    """
    _write_dist(tmp_path, "aaa-first", "aaa_first", dup_source.format(name="same-name"), "aaa")
    _write_dist(tmp_path, "zzz-second", "zzz_second", dup_source.format(name="same-name"), "zzz")
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "attnzoo", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    by_name = {p["name"]: p for p in json.loads(out.stdout)}
    assert by_name["broken"]["status"] == "failed"
    assert "needs libfoo" in by_name["broken"]["error"]
    assert by_name["aaa"]["status"] == "ok"
    assert by_name["zzz"]["status"] == "conflict"
    assert "zzz-second" in by_name["zzz"]["error"] and "aaa-first" in by_name["zzz"]["error"]
    listed = subprocess.run(
        [sys.executable, "-m", "attnzoo", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    names = [m["name"] for m in json.loads(listed.stdout)]
    assert names.count("same-name") == 1
    assert next(m for m in json.loads(listed.stdout) if m["name"] == "same-name")["package"] == "aaa-first"
