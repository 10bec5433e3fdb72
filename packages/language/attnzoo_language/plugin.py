"""attnzoo plugin of attnzoo-language: the mixer language models.

Torch-free on purpose: the zoo imports this module to list models. The model code
(``attnzoo_language.modeling``) is imported only when a model is built.
"""

from __future__ import annotations

from attnzoo import InputSpec, ModelSpec, Paper, hookimpl

MOH_PAPER = Paper(
    title="MoH: Multi-Head Attention as Mixture-of-Head Attention",
    arxiv="2410.11842",
    code_url="https://github.com/SkyworkAI/MoH",
)
GRASSMANN_PAPER = Paper(
    title="Attention Is Not What You Need: Grassmann Flows as an Attention-Free Alternative for Sequence Modeling",
    arxiv="2512.19428",
)
DECONSTRUCTING_PAPER = Paper(
    title="Deconstructing Attention: Investigating Design Principles for Effective Language Modeling",
    arxiv="2510.11602",
    code_url="https://github.com/HUIYINXUE/DeconAttn",
)
TRANSFORMER_PAPER = Paper(title="Attention Is All You Need", arxiv="1706.03762")

BYTE_INPUT = InputSpec(kind="tokens", shape=(64,), vocab_size=256)
TINY = {"vocab_size": 256, "hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4}

# name, builder function, mixers, paper, description
_VARIANTS = (
    (
        "mixer-lm-softmax-tiny",
        "mixer_lm_softmax_tiny",
        "softmax",
        TRANSFORMER_PAPER,
        "byte-level decoder, 4 layers of standard softmax attention (baseline)",
    ),
    (
        "mixer-lm-moh-tiny",
        "mixer_lm_moh_tiny",
        "moh",
        MOH_PAPER,
        "4 layers of MoH attention: 2 shared heads + top-1 of 2 routed heads",
    ),
    (
        "mixer-lm-grassmann-tiny",
        "mixer_lm_grassmann_tiny",
        "grassmann",
        GRASSMANN_PAPER,
        "4 Causal Grassmann layers (r=32, offsets 1,2,4,8,12,16), attention-free",
    ),
    (
        "mixer-lm-hybrid-tiny",
        "mixer_lm_hybrid_tiny",
        "grassmann,softmax",
        GRASSMANN_PAPER,
        "Grassmann and softmax layers alternating",
    ),
    (
        "mixer-lm-mlp-tiny",
        "mixer_lm_mlp_tiny",
        "mlp",
        DECONSTRUCTING_PAPER,
        "Deconstructing attention: no token mixing (parameter-matched gated MLP)",
    ),
    (
        "mixer-lm-mlp-hybrid-tiny",
        "mixer_lm_mlp_hybrid_tiny",
        "mlp,softmax",
        DECONSTRUCTING_PAPER,
        "Deconstructing attention hybrid: gated MLP in odd layers, softmax attention in even layers",
    ),
    (
        "mixer-lm-taylor-tiny",
        "mixer_lm_taylor_tiny",
        "taylor",
        DECONSTRUCTING_PAPER,
        "Deconstructing attention: approximate form (2nd-order Taylor softmax)",
    ),
    (
        "mixer-lm-elementwise-tiny",
        "mixer_lm_elementwise_tiny",
        "elementwise",
        DECONSTRUCTING_PAPER,
        "Deconstructing attention: non-approximate form (element-wise self-gated scores)",
    ),
    (
        "mixer-lm-rndembqk-tiny",
        "mixer_lm_rndembqk_tiny",
        "rndembqk",
        DECONSTRUCTING_PAPER,
        "Deconstructing attention: sequence-independent maps (fixed random Q/K embeddings)",
    ),
    (
        "mixer-lm-staticembqk-tiny",
        "mixer_lm_staticembqk_tiny",
        "staticembqk",
        DECONSTRUCTING_PAPER,
        "Deconstructing attention: Q/K from the static input embeddings",
    ),
)


def model_specs() -> list[ModelSpec]:
    """The ModelSpecs this plugin registers (torch-free)."""
    specs = []
    for name, function, mixers, paper, description in _VARIANTS:
        specs.append(
            ModelSpec(
                name=name,
                builder=f"attnzoo_language.modeling:{function}",
                family="mixer-lm",
                task="text-generation",
                paper=paper,
                license="Apache-2.0",
                config={**TINY, "mixers": mixers},
                input=BYTE_INPUT,
                description=description,
            )
        )
    return specs


@hookimpl
def register_models(register):
    for spec in model_specs():
        register(spec)
