"""The ``attnzoo`` command line: plugins, list, info, load, and whatever plugins add."""

from __future__ import annotations

import json
import sys

import click

from . import registry as zoo_registry
from .errors import ZooError


class ZooGroup(click.Group):
    """Turns bad input (ZooError, ValueError) into a one-line message and exit status 1, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (ZooError, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=ZooGroup)
@click.version_option(package_name="attnzoo")
def cli() -> None:
    """attnzoo: attention models from recent papers, loadable by name."""


def _console():
    from rich.console import Console

    return Console()


@cli.command(name="plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_command(as_json: bool) -> None:
    """Show installed plugins, their status and any error."""
    import dataclasses

    found = zoo_registry.plugins()
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(p) for p in found], indent=2))
        return
    from rich.table import Table

    table = Table(title="attnzoo plugins")
    for column in ("plugin", "distribution", "version", "status", "models", "error"):
        table.add_column(column, overflow="fold")
    colours = {"ok": "green", "failed": "red", "conflict": "yellow"}
    for p in found:
        status = f"[{colours.get(p.status, 'white')}]{p.status}[/]"
        table.add_row(p.name, p.distribution, p.version, status, str(len(p.models)), p.error or "")
    _console().print(table)


@cli.command(name="list")
@click.argument("pattern", default="*")
@click.option("--task", help="Only models of this task (image-classification, text-generation, ...).")
@click.option("--package", help="Only models of this distribution (attnzoo-vision, ...).")
@click.option(
    "--pretrained/--no-pretrained", default=None, help="Only models with (or without) published weights."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(pattern: str, task: str | None, package: str | None, pretrained: bool | None, as_json: bool):
    """List models whose name matches PATTERN (a glob)."""
    names = zoo_registry.list_models(pattern, task=task, package=package, pretrained=pretrained)
    cards = [zoo_registry.info(n) for n in names]
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in cards], indent=2, default=str))
        return
    from rich.table import Table

    table = Table(title=f"{len(cards)} models")
    table.add_column("name", no_wrap=True)
    for column in ("aliases", "task", "package", "weights", "paper"):
        table.add_column(column, overflow="fold")
    for c in cards:
        tags = ", ".join(w.tag for w in c.weights) or "-"
        table.add_row(c.name, ", ".join(c.aliases), c.task, c.package, tags, c.paper.arxiv or c.paper.title)
    _console().print(table)


@cli.command(name="info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info_command(name: str, as_json: bool) -> None:
    """Describe a model: paper, licence, config, weights, input, metrics."""
    card = zoo_registry.info(name)
    data = card.to_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    from rich.pretty import Pretty
    from rich.table import Table

    table = Table(title=card.name, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key in ("aliases", "package", "version", "family", "task", "paper", "license", "description"):
        table.add_row(key, Pretty(data[key]))
    table.add_row("config", Pretty(data["config"]))
    for w in data["weights"]:
        table.add_row(
            f"weights.{w['tag']}",
            Pretty({k: w[k] for k in ("source", "sha256", "license", "origin", "metrics")}),
        )
    table.add_row("input", Pretty(data["input"]))
    table.add_row("metrics", Pretty(data["metrics"]))
    _console().print(table)


@cli.command(name="load")
@click.argument("name")
@click.option(
    "--weights", type=click.Path(exists=True), help="A local safetensors file or official checkpoint."
)
@click.option(
    "--random-init", is_flag=True, help="Skip pretrained weights and use the random initialisation."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Batch size of the forward pass.",
)
def load_command(name: str, weights: str | None, random_init: bool, batch_size: int) -> None:
    """Build a model, print its size and input spec, and time one forward pass."""
    import time

    import torch

    from .inputs import example_input

    started = time.perf_counter()
    model = zoo_load(name, pretrained=not random_init, weights=weights)
    built = time.perf_counter() - started
    card = zoo_registry.info(name)
    params = sum(p.numel() for p in model.parameters())
    source = "random init" if random_init and weights is None else (weights or "pretrained")
    click.echo(f"{card.name} ({card.package} {card.version}): {params:,} parameters, weights: {source}")
    click.echo(f"built in {built:.2f} s")
    if card.input is None:
        click.echo("no input spec registered; skipping the forward pass")
        return
    batch = example_input(card.input, batch_size=batch_size)
    click.echo(f"input: {card.input.kind} {tuple(batch.shape)} {batch.dtype}")
    with torch.inference_mode():
        started = time.perf_counter()
        output = model(batch)
        elapsed = time.perf_counter() - started
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
    click.echo(f"forward: output {shape} in {elapsed * 1000:.1f} ms")


def zoo_load(*args, **kwargs):
    from .loading import load

    return load(*args, **kwargs)


def _add_plugin_commands() -> None:
    from .discovery import registry

    reg = registry()
    for impl in reg.manager.hook.register_commands.get_hookimpls():
        try:
            impl.function(cli=cli)
        except Exception as exc:  # noqa: BLE001 - one plugin's broken command must not hide the others
            click.echo(f"attnzoo: plugin {impl.plugin_name!r} failed to add its commands: {exc!r}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``attnzoo`` script."""
    _add_plugin_commands()
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="attnzoo")
