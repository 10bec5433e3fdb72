"""The tools plugin: its commands reach the attnzoo CLI, and importing it stays torch-free."""

from __future__ import annotations

import subprocess
import sys


def test_plugin_module_is_torch_free_and_registers_the_commands():
    code = (
        "import sys, click\n"
        "import attnzoo_tools.plugin as plugin\n"
        "assert 'torch' not in sys.modules, 'attnzoo_tools.plugin imported torch'\n"
        "group = click.Group()\n"
        "plugin.register_commands(cli=group)\n"
        "print(sorted(group.commands))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['card', 'convert', 'publish', 'verify']"


def test_the_tools_entry_point_adds_the_commands():
    from importlib import metadata

    (entry,) = [ep for ep in metadata.entry_points(group="attnzoo") if ep.name == "tools"]
    assert entry.value == "attnzoo_tools.plugin"
    from attnzoo.cli import _add_plugin_commands, cli

    _add_plugin_commands()
    assert {"convert", "verify", "publish", "card"} <= set(cli.commands)
