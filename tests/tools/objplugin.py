"""A test plugin whose official checkpoints pickle the whole model object (Ultralytics style)."""

from __future__ import annotations

from attnzoo import ConverterSpec, ModelSpec, Paper, hookimpl
from attnzoo.specs import InputSpec


def convert_pickled_model(checkpoint, spec):
    """Official files hold ``{'model': <ToyNet object>}``; read its tensors through ``state_dict()``.

    Works on a real module and on the restricted unpickler's stand-in alike, and never
    imports the official class.
    """
    state = checkpoint["model"].state_dict()
    renames = {"layer1": "fc1", "layer2": "fc2"}
    return {renames[k.split(".")[0]] + "." + k.split(".", 1)[1]: v for k, v in state.items()}


def build_tied(vocab: int = 5, width: int = 4):
    """A tiny language model whose output head shares the embedding matrix."""
    from torch import nn

    class TiedLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, width)
            self.head = nn.Linear(width, vocab, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, tokens):
            return self.head(self.embed(tokens))

    return TiedLM()


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="toy-tied",
            builder="objplugin:build_tied",
            family="toy-tied",  # no converter: official files are already in the zoo's layout
            task="text-generation",
            paper=Paper(title="A toy with tied weights"),
            license="MIT",
            input=InputSpec(kind="tokens", shape=(6,), vocab_size=5),
        )
    )
    register(
        ModelSpec(
            name="toy-objects",
            builder="toyplugin:build_toy",
            family="toy-objects",
            task="tabular-classification",
            paper=Paper(title="A toy whose checkpoints pickle objects"),
            license="AGPL-3.0",
            config={"width": 8, "num_classes": 3},
            input=InputSpec(kind="tensor", shape=(4,)),
        )
    )


@hookimpl
def register_converters(register):
    register(ConverterSpec(family="toy-objects", function="objplugin:convert_pickled_model"))
