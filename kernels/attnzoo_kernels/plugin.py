"""attnzoo plugin hooks of attnzoo-kernels: the ``attnzoo kernels`` command."""

from __future__ import annotations

from attnzoo import hookimpl


@hookimpl
def register_commands(cli):
    import click  # only the CLI pays for click; listing models stays light

    @cli.command(name="kernels")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    def kernels_command(as_json: bool) -> None:
        """List ops x backends and whether each can run on this machine."""
        import json

        from rich.console import Console
        from rich.table import Table

        from attnzoo_kernels.ops import all_ops

        rows = []
        for op in all_ops().values():
            for backend in sorted(op.backends.values(), key=lambda b: -b.priority):
                missing = backend.unavailable_reason()
                rows.append(
                    {
                        "op": op.name,
                        "backend": backend.name,
                        "priority": backend.priority,
                        "devices": list(backend.devices),
                        "training": backend.supports_grad,
                        "available": missing is None,
                        "reason": missing or "",
                        "compile": backend.compile_note,
                    }
                )
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        table = Table(title="attnzoo kernels on this machine")
        table.add_column("op", no_wrap=True)
        for column in ("backend", "devices", "training", "available", "torch.compile"):
            table.add_column(column)
        for row in rows:
            status = "[green]yes[/]" if row["available"] else f"[red]no[/] ({row['reason']})"
            table.add_row(
                row["op"],
                row["backend"],
                ",".join(row["devices"]),
                "yes" if row["training"] else "no",
                status,
                row["compile"],
            )
        Console().print(table)
