"""attnzoo plugin of attnzoo-spatial: QuatRoPE LLaMA models and the official checkpoint converter (torch-free)."""

from __future__ import annotations

from attnzoo import ConverterSpec, InputSpec, ModelSpec, Paper, hookimpl

QUATROPE_PAPER = Paper(
    title="Scalable Object Relation Encoding for Better 3D Spatial Reasoning in Large Language Models",
    arxiv="2603.24721",
    code_url="https://github.com/oceanflowlab/QuatRoPE",
)


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="quatrope-llama-tiny",
            builder="attnzoo_spatial.quatrope:quatrope_llama_tiny",
            family="quatrope",
            task="text-generation",
            paper=QUATROPE_PAPER,
            license="Apache-2.0",
            config={
                "compat": "official",
                "vocab_size": 256,
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
            },
            input=InputSpec(kind="tokens", shape=(32,), vocab_size=256),
            description=(
                "Tiny random-init LLaMA with QuatRoPE/IGRE object tokens patched into its attention "
                "(pass object_positions=(B, L, 3) to forward or generate); a demo, no pretrained weights."
            ),
        )
    )


@hookimpl
def register_converters(register):
    register(
        ConverterSpec(
            family="quatrope",
            function="attnzoo_spatial.quatrope:convert_official",
            description="fzzsl/QuatRoPE .pth (3DGraphLLM/Chat-Scene wrapper) -> PEFT-free LoRA + projector keys.",
        )
    )
