"""attnzoo plugin of attnzoo-tools: adds ``convert``, ``verify``, ``publish`` and ``card`` to the CLI.

Torch-free on purpose (the zoo imports every plugin to list models): each command
imports its implementation, and with it torch, only when it runs.
"""

from __future__ import annotations

import json

import click
from attnzoo import hookimpl


def _parse_overrides(items: tuple[str, ...]) -> dict:
    overrides = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(
                f"{item!r} must look like KEY=VALUE (VALUE in JSON, e.g. num_classes=10)"
            )
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw  # a bare word is a string
    return overrides


@click.command(name="convert")
@click.argument("name")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Release folder to write."
)
@click.option("--tag", help="Weight tag, when NAME carries none (NAME.tag).")
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Builder config override (JSON value)."
)
@click.option(
    "--keep-dtype", is_flag=True, help="Store floating tensors in the checkpoint's dtype, not the model's."
)
@click.option("--overwrite", is_flag=True, help="Replace the release files in a non-empty folder.")
def convert_command(name, source, out_dir, tag, overrides, keep_dtype, overwrite) -> None:
    """Convert an official checkpoint SOURCE of model NAME into a safetensors release folder.

    SOURCE is a .pth/.pt/.bin/.ckpt or .safetensors file. Pickles are opened with
    torch.load(weights_only=True), falling back to a restricted unpickler (allow-listed
    classes only; other classes become inert stand-ins, calls are refused).
    """
    from .convert import convert

    result = convert(
        name, source, out_dir, config_overrides=_parse_overrides(overrides), tag=tag,
        keep_dtype=keep_dtype, overwrite=overwrite,
    )  # fmt: skip
    click.echo(
        f"wrote {result.out_dir}/ (model.safetensors, model.safetensors.sha256, config.json, README.md)"
    )
    click.echo(f"sha256: {result.sha256}")
    click.echo(f"{result.tensors} tensors, {result.parameters:,} parameters; read with {result.reader}")
    if result.stand_ins:
        click.echo(f"classes read as inert stand-ins: {', '.join(result.stand_ins)}")
    click.echo(f"next: attnzoo verify {result.out_dir} {name} --source {source}")


@click.command(name="verify")
@click.argument("out_dir", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.argument("name")
@click.option(
    "--source", type=click.Path(exists=True, dir_okay=False), help="The official checkpoint to compare with."
)
@click.option("--atol", default=1e-5, show_default=True, help="Largest accepted absolute output difference.")
@click.option("--batch-size", default=1, show_default=True)
@click.option("--seed", default=0, show_default=True, help="Seed of the fixed example input.")
def verify_command(out_dir, name, source, atol, batch_size, seed) -> None:
    """Load DIR as zoo.load does (strictly), run NAME on a fixed input, compare with --source."""
    from .verify import verify

    report = verify(out_dir, name, source=source, batch_size=batch_size, seed=seed)
    click.echo(f"{report.model}: loaded strictly from {out_dir} (sha256 {report.sha256})")
    click.echo(f"input {report.input_shape} -> outputs {report.output_shapes}, finite: {report.finite}")
    if report.max_abs_diff is not None:
        click.echo(f"source read with {report.source_reader}")
        click.echo(f"max |param diff| vs source: {report.max_param_diff:.3g}")
        click.echo(f"max |output diff| vs source: {report.max_abs_diff:.3g} (atol {atol:g})")
        if report.max_abs_diff_realigned is not None:
            click.echo(
                f"  with the release's tensors copied to aligned memory: {report.max_abs_diff_realigned:.3g}"
                + (
                    " (the conversion is exact; the rest is CPU rounding on unaligned memory)"
                    if report.max_abs_diff_realigned == 0
                    else ""
                )
            )
    if not report.ok(atol):
        raise click.ClickException(
            "verification failed: "
            + ("non-finite outputs" if not report.finite else f"output difference above atol {atol:g}")
        )
    click.echo("ok")


@click.command(name="publish")
@click.argument("out_dir", metavar="DIR", type=click.Path(exists=True, file_okay=False))
@click.option("--repo-id", required=True, help="Hub model repo, ORG/NAME.")
@click.option("--revision", help="Branch to commit to (created if missing); default main.")
@click.option("--private", is_flag=True, help="Create the repo as private (if it does not exist).")
@click.option("--dry-run", is_flag=True, help="Check the folder and show the plan; upload nothing.")
@click.option("--tag", help="Weight tag for the entry, if convert recorded none.")
@click.option("--commit-message", help="Commit message (default names model, tag and source file).")
def publish_command(out_dir, repo_id, revision, private, dry_run, tag, commit_message) -> None:
    """Upload release folder DIR to the Hub and print the WeightEntry that pins it."""
    from .publish import publish

    result = publish(
        out_dir, repo_id, revision=revision, private=private, dry_run=dry_run, tag=tag,
        commit_message=commit_message,
    )  # fmt: skip
    action = "would upload" if result.dry_run else "uploaded"
    click.echo(f"{action} to {result.repo_id}@{result.branch}:")
    for name, size in result.files:
        click.echo(f"  {name} ({size:,} bytes)")
    if result.dry_run:
        click.echo("dry run: nothing was uploaded; the entry's revision is filled in by a real publish")
    else:
        click.echo(f"commit: {result.commit}")
    click.echo("weight entry to paste into the plugin's registry:")
    click.echo(result.entry_code)


@click.command(name="card")
@click.argument("name")
@click.option("--tag", help="Weight tag (default: the first).")
@click.option(
    "-o", "--out", "out_file", type=click.Path(dir_okay=False), help="Write here instead of stdout."
)
def card_command(name, tag, out_file) -> None:
    """Print the Hub model card (README.md) of NAME, generated from the zoo's registry."""
    from pathlib import Path

    from attnzoo.registry import info, resolve

    from .card import render_card

    _, name_tag = resolve(name)
    text = render_card(info(name), tag=name_tag or tag)
    if out_file:
        Path(out_file).write_text(text)
    else:
        click.echo(text)


COMMANDS = (convert_command, verify_command, publish_command, card_command)


@hookimpl
def register_commands(cli):
    for command in COMMANDS:
        cli.add_command(command)
