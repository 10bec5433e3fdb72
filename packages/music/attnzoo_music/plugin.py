"""attnzoo plugin of attnzoo-music: the Music Transformer models and the ``attnzoo music`` commands.

Torch-free at import: the zoo imports every plugin to list models.
"""

from __future__ import annotations

import click
from attnzoo import InputSpec, ModelSpec, Paper, WeightEntry, hookimpl

from .configs import MODEL_CONFIGS
from .tokenizer import VOCAB_SIZE

PAPER = Paper(
    title="Music Transformer: Generating Music with Long-Term Structure",
    arxiv="1809.04281",
    code_url="https://github.com/tensorflow/tensor2tensor",
)
SPLIT_NOTE = (
    "NLL per token (nats) on a test split of music21's Bach chorales chosen by sha256(piece name) % 10 == 0; "
    "NOT the Boulanger-Lewandowski JSB split, so not comparable with published figures"
)
WEIGHTS_ORIGIN = (
    "trained in this repository on music21's Bach chorales (BSD), see docs/models/music-transformer.md"
)

# Filled in from the training runs' metrics.json (see docs/models/music-transformer.md).
TRAINED = {
    "music-transformer-bach": dict(
        file="music-transformer-bach.safetensors",
        sha256="5d53da20bbbae0d817f3f376b0b92a31847a6c125b9f6b121291271dce0389e7",
        test_nll=0.5553,
    ),
    "music-transformer-bach-absolute": dict(
        file="music-transformer-bach-absolute.safetensors",
        sha256="fb6bce873eb926f578dd1817e0a4bb690f4e4b8352dae9bc4cce74e0f4190b1a",
        test_nll=0.8636,
    ),
}

DESCRIPTIONS = {
    "music-transformer-bach": "Music Transformer (relative attention, skewing trick), small, trained on Bach chorales.",
    "music-transformer-bach-absolute": "The same decoder with sinusoidal absolute positions: the paper's baseline.",
}
BUILDERS = {
    "music-transformer-bach": "attnzoo_music.music_transformer:music_transformer_bach",
    "music-transformer-bach-absolute": "attnzoo_music.music_transformer:music_transformer_bach_absolute",
}


def _spec(name: str) -> ModelSpec:
    trained = TRAINED[name]
    metrics = {"test_nll_per_token": trained["test_nll"], "split": SPLIT_NOTE}
    weights = WeightEntry(
        tag="bach",
        package_file=f"attnzoo_music:weights/{trained['file']}",
        sha256=trained["sha256"],
        license="Apache-2.0",
        origin=WEIGHTS_ORIGIN,
        metrics=metrics,
    )
    config = MODEL_CONFIGS[name]
    return ModelSpec(
        name=name,
        builder=BUILDERS[name],
        family="music-transformer",
        task="music-generation",
        paper=PAPER,
        license="Apache-2.0",
        config=dict(config),
        weights=(weights,),
        input=InputSpec(kind="tokens", shape=(config["seq_len"],), vocab_size=VOCAB_SIZE),
        metrics=metrics,
        description=DESCRIPTIONS[name],
    )


@hookimpl
def register_models(register):
    for name in MODEL_CONFIGS:
        register(_spec(name))


@hookimpl
def register_commands(cli):
    @cli.group(name="music")
    def music() -> None:
        """Music Transformer: generate chorales."""

    @music.command(name="generate")
    @click.option(
        "--model", "model_name", default="music-transformer-bach", show_default=True, help="Model name."
    )
    @click.option(
        "--primer",
        help="A four-part score file (MIDI/MusicXML) or a music21 corpus piece (bwv123.6) to continue.",
    )
    @click.option(
        "--primer-length", type=int, default=None, help="Keep only the primer's first N tokens (4 per 16th)."
    )
    @click.option(
        "--steps",
        type=click.IntRange(min=0),
        default=512,
        show_default=True,
        help="Tokens to sample (4 per 16th note).",
    )
    @click.option(
        "--temperature", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True
    )
    @click.option(
        "--top-k", type=click.IntRange(min=1), default=None, help="Sample among the k likeliest tokens."
    )
    @click.option("--seed", type=int, default=0, show_default=True, help="Seeded runs repeat exactly.")
    @click.option(
        "--threads",
        type=int,
        default=1,
        show_default=True,
        help="CPU threads; one token at a time is latency-bound, and more threads only contend.",
    )
    @click.option("--musicxml", is_flag=True, help="Also write MusicXML beside the MIDI file.")
    @click.option(
        "--weights", type=click.Path(exists=True, dir_okay=False), help="A local safetensors file instead."
    )
    @click.option(
        "-o", "--output", type=click.Path(dir_okay=False), required=True, help="The MIDI file to write."
    )
    def generate(
        model_name, primer, primer_length, steps, temperature, top_k, seed, threads, musicxml, weights, output
    ):
        """Sample a chorale and write it as MIDI (and MusicXML)."""
        import attnzoo
        import torch
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from .generate import primer_tokens, sample, write_score

        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        card = attnzoo.info(model_name)
        if card.task != "music-generation":
            raise click.BadParameter(
                f"{card.name} is a {card.task} model; pick a music-generation model "
                f"({', '.join(attnzoo.list_models(task='music-generation'))})",
                param_hint="--model",
            )
        model = attnzoo.load(model_name, weights=weights)
        prompt = primer_tokens(primer, primer_length)
        columns = (TextColumn("sampling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns) as progress:
            task = progress.add_task("sampling", total=steps)
            tokens = sample(
                model,
                prompt,
                steps=steps,
                temperature=temperature,
                top_k=top_k,
                seed=seed,
                on_step=lambda done: progress.update(task, completed=done),
            )
        files = write_score(tokens, output, musicxml=musicxml, title=f"{model_name} seed {seed}")
        generated = len(tokens) - len(prompt)
        click.echo(
            f"sampled {generated} tokens ({generated // 4} sixteenths); wrote " + ", ".join(map(str, files))
        )
