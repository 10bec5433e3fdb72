"""Hub model cards generated from the zoo's ModelCard, so docs, CLI and Hub say the same thing.

``render_card`` is a pure, torch-free function: ``attnzoo convert`` writes its output as
the repo's ``README.md``, and a docs generator can call it on any ``attnzoo.info(name)``.

Metric conventions read from ``ModelSpec.metrics`` and ``WeightEntry.metrics`` (the entry wins):

* evaluation metrics go to the ``model-index``: ``top1``, ``top5``, ``miou``, ``map``/``box_ap``,
  ``mask_ap``, ``perplexity``/``ppl``, ``nll``/``test_nll``, ``bpc``, ``bpd``, ``f1``;
* ``dataset`` (a Hub dataset id or a list of them) and ``split`` describe what they were measured on;
* ``source`` (a string or ``{"name": ..., "url": ...}``) says who measured them; without it they are
  attributed to the paper, since plugins copy the paper's tables;
* anything else numeric (``params_m``, ``gflops``, ``resolution``) is listed in the card's
  "Model stats" table and kept out of the ``model-index``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml
from attnzoo.specs import ModelCard, WeightEntry

__all__ = ["front_matter", "hub_license", "pipeline_tag", "render_card", "split_card"]

# zoo task -> Hub pipeline_tag (tasks the Hub knows under the same name map to themselves)
_PIPELINE_TAGS = {
    "image-classification": "image-classification",
    "object-detection": "object-detection",
    "image-segmentation": "image-segmentation",
    "semantic-segmentation": "image-segmentation",
    "instance-segmentation": "image-segmentation",
    "depth-estimation": "depth-estimation",
    "image-feature-extraction": "image-feature-extraction",
    "feature-extraction": "feature-extraction",
    "text-generation": "text-generation",
    "language-modeling": "text-generation",
    "causal-lm": "text-generation",
    "fill-mask": "fill-mask",
    "text-classification": "text-classification",
    "token-classification": "token-classification",
    "translation": "translation",
    "summarization": "summarization",
    "music-generation": "text-to-audio",
    "audio-generation": "text-to-audio",
    "symbolic-music-generation": "text-generation",
    "audio-classification": "audio-classification",
    "automatic-speech-recognition": "automatic-speech-recognition",
    "time-series-forecasting": "time-series-forecasting",
    "tabular-classification": "tabular-classification",
    "tabular-regression": "tabular-regression",
    "video-classification": "video-classification",
    "point-cloud-classification": "other",
}

# Licence identifiers the Hub accepts in front matter (lower-case SPDX-like ids).
_HUB_LICENSES = {
    "apache-2.0", "mit", "bsd", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear", "cc0-1.0",
    "cc-by-2.0", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0",
    "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0",
    "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0", "gpl-2.0", "gpl-3.0", "lgpl-2.1",
    "lgpl-3.0", "agpl-3.0", "mpl-2.0", "openrail", "openrail++", "bigscience-openrail-m",
    "creativeml-openrail-m", "unlicense", "wtfpl", "afl-3.0", "artistic-2.0", "ecl-2.0", "epl-2.0",
    "eupl-1.1", "isc", "ms-pl", "odbl", "pddl", "llama2", "llama3", "gemma",
}  # fmt: skip

# metric key -> (Hub metric type, display name)
_EVAL_METRICS = {
    "top1": ("accuracy", "Top-1 accuracy"),
    "top5": ("accuracy", "Top-5 accuracy"),
    "acc": ("accuracy", "Accuracy"),
    "accuracy": ("accuracy", "Accuracy"),
    "miou": ("mean_iou", "mIoU"),
    "map": ("mAP", "mAP"),
    "box_ap": ("mAP", "box AP"),
    "mask_ap": ("mAP", "mask AP"),
    "perplexity": ("perplexity", "Perplexity"),
    "ppl": ("perplexity", "Perplexity"),
    "nll": ("nll", "Negative log-likelihood"),
    "test_nll": ("nll", "Test negative log-likelihood"),
    "bpc": ("bpc", "Bits per character"),
    "bpd": ("bpd", "Bits per dimension"),
    "f1": ("f1", "F1"),
}
_NON_METRIC_KEYS = {"dataset", "split", "source"}

# weight tags that name their training data -> Hub dataset ids
_TAG_DATASETS = {
    "in1k": ["imagenet-1k"],
    "in22k": ["imagenet-21k"],
    "in21k": ["imagenet-21k"],
    "in22k-ft-in1k": ["imagenet-21k", "imagenet-1k"],
    "in22k_ft_in1k": ["imagenet-21k", "imagenet-1k"],
    "coco": ["detection-datasets/coco"],
    "ade20k": ["scene_parse_150"],
}
_DATASET_NAMES = {
    "imagenet-1k": "ImageNet-1k",
    "imagenet-21k": "ImageNet-21k",
    "detection-datasets/coco": "COCO",
    "scene_parse_150": "ADE20K",
}


def hub_license(license: str) -> tuple[str, dict[str, str]]:
    """The Hub licence id for a zoo licence string, and extra front-matter keys for ``other``."""
    key = license.strip().lower().replace(" ", "-")
    if key in _HUB_LICENSES:
        return key, {}
    slug = "".join(c if c.isalnum() else "-" for c in key).strip("-") or "unknown"
    return "other", {"license_name": slug}


def pipeline_tag(task: str) -> str | None:
    """The Hub pipeline_tag of a zoo task, or None when the Hub has no matching pipeline."""
    tag = _PIPELINE_TAGS.get(task)
    return None if tag == "other" else tag


def _entry(card: ModelCard, tag: str | None) -> WeightEntry | None:
    if tag is None:
        return card.weights[0] if card.weights else None
    return next((w for w in card.weights if w.tag == tag), None)


def _metrics(card: ModelCard, entry: WeightEntry | None) -> dict[str, Any]:
    merged = dict(card.metrics)
    if entry is not None:
        merged.update(entry.metrics)
    return merged


def _datasets(metrics: Mapping[str, Any], tag: str | None) -> list[str]:
    found: list[str] = []
    declared = metrics.get("dataset")
    for name in [declared] if isinstance(declared, str) else list(declared or ()):
        if name not in found:
            found.append(name)
    for name in _TAG_DATASETS.get(tag or "", []):
        if name not in found:
            found.append(name)
    return found


def _metric_source(card: ModelCard, metrics: Mapping[str, Any]) -> dict[str, str]:
    source = metrics.get("source")
    if isinstance(source, Mapping):
        return {k: str(v) for k, v in source.items() if k in ("name", "url")}
    if isinstance(source, str):
        return {"name": source}
    paper = card.paper
    if paper.arxiv:
        return {"name": f"{paper.title} (arXiv:{paper.arxiv})", "url": f"https://arxiv.org/abs/{paper.arxiv}"}
    if paper.code_url:
        return {"name": paper.title, "url": paper.code_url}
    return {"name": paper.title}


def _model_index(card: ModelCard, metrics: Mapping[str, Any], datasets: list[str]) -> list[dict[str, Any]]:
    values = [
        {"type": _EVAL_METRICS[key][0], "name": _EVAL_METRICS[key][1], "value": value}
        for key, value in metrics.items()
        if key in _EVAL_METRICS and isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    if not values:
        return []
    task_type = pipeline_tag(card.task) or card.task
    dataset_id = (
        metrics.get("dataset") if isinstance(metrics.get("dataset"), str) else (datasets or [None])[-1]
    )
    dataset = {
        "type": dataset_id or "unknown",
        "name": _DATASET_NAMES.get(dataset_id, dataset_id or "unknown"),
    }
    if metrics.get("split"):
        dataset["split"] = str(metrics["split"])
    result = {
        "task": {"type": task_type, "name": task_type.replace("-", " ").capitalize()},
        "dataset": dataset,
        "metrics": values,
        "source": _metric_source(card, metrics),
    }
    return [{"name": card.name, "results": [result]}]


def front_matter(card: ModelCard, *, tag: str | None = None) -> dict[str, Any]:
    """The YAML front matter of the card as a dict (Hub model-card metadata keys)."""
    entry = _entry(card, tag)
    tag = tag or (entry.tag if entry else None)
    metrics = _metrics(card, entry)
    licence, extra = hub_license(entry.license if entry is not None else card.license)
    data: dict[str, Any] = {"license": licence, **extra, "library_name": "attnzoo"}
    tags = ["attnzoo", card.family, card.task]
    if card.paper.arxiv:
        tags.append(f"arxiv:{card.paper.arxiv}")
    data["tags"] = list(dict.fromkeys(tags))
    pipeline = pipeline_tag(card.task)
    if pipeline:
        data["pipeline_tag"] = pipeline
    datasets = _datasets(metrics, tag)
    if datasets:
        data["datasets"] = datasets
    model_index = _model_index(card, metrics, datasets)
    if model_index:
        data["model-index"] = model_index
    return data


def _usage(card: ModelCard, name: str, integrations: Mapping[str, str]) -> list[str]:
    lines = ["## Usage", "", "```python", "import attnzoo as zoo", ""]
    lines.append(f'model = zoo.load("{name}")  # downloads and checks the weights, then builds the model')
    if card.input is not None:
        lines.append("")
        lines += _input_lines(card)
    lines.append("```")
    if "timm" in integrations:
        # "package.module:name" when the model reaches timm's registry by importing that module
        module, _, timm_name = integrations["timm"].rpartition(":")
        lines += ["", "With timm:", "", "```python", "import timm"]
        if module:
            lines.append(f"import {module}  # registers the model with timm")
        lines += ["", f'model = timm.create_model("{timm_name}", pretrained=True)', "```"]
    if "transformers" in integrations:
        lines += ["", "With transformers:", "", "```python", "from transformers import AutoModel", ""]
        lines.append(f'model = AutoModel.from_pretrained("{integrations["transformers"]}")')
        lines.append("```")
    return lines


def _input_lines(card: ModelCard) -> list[str]:
    spec = card.input
    shape = ", ".join(str(s) for s in (1, *spec.shape))
    if spec.kind == "tokens":
        return [
            "import torch",
            "",
            f"tokens = torch.randint(0, {spec.vocab_size}, {(1, *spec.shape)!r})",
            "output = model(tokens)",
        ]
    lines = ["import torch", ""]
    if spec.kind == "image" and spec.preprocess:
        lines.append(f"# preprocessing: {json.dumps(dict(spec.preprocess))}")
    lines += [f"x = torch.randn({shape})", "output = model(x)"]
    return lines


def _table(rows: list[tuple[str, str]]) -> list[str]:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    return lines


def render_card(
    card: ModelCard,
    *,
    sha256: str | None = None,
    source: Mapping[str, Any] | None = None,
    tag: str | None = None,
    integrations: Mapping[str, str] | None = None,
) -> str:
    """The Hub ``README.md`` of a model's weights: YAML front matter, then the card in Markdown.

    ``sha256`` is the published ``model.safetensors``'s hash; ``source`` describes what it was
    converted from (``{"file": ..., "sha256": ...}``, as ``attnzoo convert`` records it); ``tag``
    picks the weight entry (default: the first); ``integrations`` maps ``"timm"`` or
    ``"transformers"`` to the model's name there, for extra usage snippets (a timm name may be
    ``"package.module:name"`` when importing that module registers the model with timm).
    """
    entry = _entry(card, tag)
    tag = tag or (entry.tag if entry else None)
    integrations = dict(integrations or getattr(card, "integrations", None) or {})
    metrics = _metrics(card, entry)
    meta = front_matter(card, tag=tag)
    name = f"{card.name}.{tag}" if tag else card.name

    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    lines += [f"# {card.name}", ""]
    if card.description:
        lines += [card.description, ""]
    paper = card.paper
    paper_link = f"[{paper.title}](https://arxiv.org/abs/{paper.arxiv})" if paper.arxiv else paper.title
    about = [("paper", paper_link)]
    if paper.code_url:
        about.append(("official code", paper.code_url))
    about += [
        ("family", f"`{card.family}`"),
        ("task", card.task),
        ("package", f"{card.package} {card.version}"),
        ("aliases", ", ".join(f"`{a}`" for a in card.aliases) or "—"),
        ("licence", entry.license if entry is not None else card.license),
    ]
    lines += _table(about) + [""]

    lines += _usage(card, name, integrations) + [""]

    evals = [(k, v) for k, v in metrics.items() if k in _EVAL_METRICS]
    stats = [(k, v) for k, v in metrics.items() if k not in _EVAL_METRICS and k not in _NON_METRIC_KEYS]
    if evals:
        origin = _metric_source(card, metrics)
        where = f"[{origin['name']}]({origin['url']})" if "url" in origin else origin["name"]
        dataset = ", ".join(_datasets(metrics, tag)) or "unspecified data"
        lines += ["## Results", "", f"On {dataset}; source: {where}.", ""]
        lines += _table([(_EVAL_METRICS[k][1], str(v)) for k, v in evals]) + [""]
    if stats:
        lines += ["## Model stats", ""] + _table([(k, str(v)) for k, v in stats]) + [""]

    lines += [
        "## Configuration",
        "",
        "```json",
        json.dumps(dict(card.config), indent=2, default=str),
        "```",
        "",
    ]
    if card.input is not None:
        spec = card.input
        described = {"kind": spec.kind, "shape": list(spec.shape)}
        if spec.vocab_size is not None:
            described["vocab_size"] = spec.vocab_size
        if spec.preprocess:
            described["preprocess"] = dict(spec.preprocess)
        lines += ["## Input", "", "```json", json.dumps(described, default=str), "```", ""]

    weights = [("file", "`model.safetensors`")]
    if sha256:
        weights.append(("sha256", f"`{sha256}`"))
    if entry is not None:
        weights.append(("origin", entry.origin))
        if entry.notes:
            weights.append(("notes", entry.notes))
    if source:
        if source.get("file"):
            weights.append(("converted from", f"`{source['file']}`"))
        if source.get("sha256"):
            weights.append(("source sha256", f"`{source['sha256']}`"))
    lines += ["## Weights", ""] + _table(weights) + [""]
    if sha256 or (entry is not None and entry.published):
        lines += [
            "The weights are a plain safetensors file; `attnzoo` checks its sha256 before building the model.",
            "",
        ]
    else:
        lines += [
            "These weights are announced but not yet published; `attnzoo` refuses to load them until "
            "the entry pins a revision and a sha256.",
            "",
        ]
    return "\n".join(lines)


def split_card(text: str) -> tuple[dict[str, Any], str]:
    """Parse a card back into (front matter, body); raises ValueError if there is no front matter."""
    if not text.startswith("---\n"):
        raise ValueError("a model card starts with '---' and YAML front matter")
    head, sep, body = text[4:].partition("\n---\n")
    if not sep:
        raise ValueError("the card's YAML front matter is not closed by '---'")
    return yaml.safe_load(head) or {}, body
