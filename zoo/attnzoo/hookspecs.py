"""The attnzoo plugin protocol. A plugin is a module named by an entry point in group ``attnzoo``."""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("attnzoo")
hookimpl = pluggy.HookimplMarker("attnzoo")


@hookspec
def register_models(register):
    """Call ``register(ModelSpec(...))`` once per model the plugin offers."""


@hookspec
def register_converters(register):
    """Call ``register(ConverterSpec(...))`` once per model family with official checkpoints."""


@hookspec
def register_commands(cli):
    """Add subcommands to the ``attnzoo`` click group ``cli``."""
