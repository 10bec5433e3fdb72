"""Configuration of the mixer language model: one decoder, a token mixer chosen per layer.

The per-layer mixers are one string, e.g. ``"softmax,grassmann,softmax,grassmann"`` or the
pattern ``"grassmann*3+softmax"``; :func:`parse_mixers` expands it to one name per layer.
"""

from __future__ import annotations

import re

from transformers import PreTrainedConfig

__all__ = ["MIXER_NAMES", "MixerLMConfig", "parse_mixers"]

# Kept here (torch-free) so that configs validate without importing the mixer modules;
# ``attnzoo_language.mixers`` checks at import that its registry matches this tuple.
MIXER_NAMES: tuple[str, ...] = (
    "softmax",
    "moh",
    "grassmann",
    "mlp",
    "taylor",
    "elementwise",
    "rndembqk",
    "staticembqk",
)

_TERM = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(?:\*\s*(\d+))?\s*$")


def parse_mixers(spec: str | list[str] | tuple[str, ...], num_layers: int | None = None) -> list[str]:
    """Expand a mixer spec to one mixer name per layer.

    ``spec`` is a list of names, or a string of terms joined by ``,`` or ``+`` where each term is
    ``name`` or ``name*count``: ``"grassmann*3+softmax"`` is ``[grassmann, grassmann, grassmann,
    softmax]``. When ``num_layers`` is given, a spec shorter than it is tiled (``"mlp,softmax"`` for
    six layers alternates three times); its length must divide ``num_layers``.
    """
    if isinstance(spec, str):
        terms = [t for t in re.split(r"[,+]", spec) if t.strip()]
        if not terms:
            raise ValueError(f"mixer spec {spec!r} is empty; name at least one of {MIXER_NAMES}")
        names: list[str] = []
        for term in terms:
            match = _TERM.match(term.lower())
            if match is None:
                raise ValueError(f"mixer term {term!r} in {spec!r} is not 'name' or 'name*count'")
            count = int(match.group(2) or 1)
            if count < 1:
                raise ValueError(f"mixer term {term!r} repeats {count} times; the count must be >= 1")
            names.extend([match.group(1)] * count)
    else:
        names = [str(n).strip().lower() for n in spec]
        if not names:
            raise ValueError("the mixer list is empty; name at least one mixer")
    unknown = sorted({n for n in names if n not in MIXER_NAMES})
    if unknown:
        raise ValueError(f"unknown mixer(s) {unknown}; the registry has {list(MIXER_NAMES)}")
    if num_layers is not None:
        if num_layers < 1:
            raise ValueError(f"num_hidden_layers must be >= 1, got {num_layers}")
        if num_layers % len(names) != 0:
            raise ValueError(
                f"the mixer spec has {len(names)} layers, which does not divide num_hidden_layers={num_layers}"
            )
        names = names * (num_layers // len(names))
    return names


class MixerLMConfig(PreTrainedConfig):
    r"""Configuration of :class:`~attnzoo_language.modeling.MixerLMForCausalLM`.

    Args:
        vocab_size: number of token ids (the byte-level models use 256).
        hidden_size: model width ``d``.
        num_hidden_layers: number of decoder blocks; ``None`` takes the length of ``mixers``.
        num_attention_heads: heads of every attention-like mixer.
        intermediate_size: SwiGLU hidden width; ``None`` gives ``8/3 * hidden_size`` rounded up to 16.
        mixers: the per-layer token mixers, a spec for :func:`parse_mixers`; stored expanded.
        max_position_embeddings: length of the learned absolute position table (and of the fixed
            random query/key embeddings of ``rndembqk``).
        rms_norm_eps: epsilon of every RMSNorm.
        initializer_range: std of the normal init of linear and embedding weights.
        tie_word_embeddings: share the input embedding with the output head (always true in the zoo's models).
        moh_shared_heads: MoH heads every token uses.
        moh_routed_heads: MoH heads each token picks (top-k) among the other ``heads - shared``.
        moh_aux_loss_coef: weight of the MoH load-balance loss (mean over MoH layers) added in training.
        grassmann_reduced_dim: ``r``, the width of the reduced states ``z`` of the Grassmann mixer.
        grassmann_windows: the offsets ``delta`` the Grassmann mixer pairs ``z_t`` with ``z_{t-delta}``.
        rndembqk_seed: seed of the fixed random embeddings that feed the queries and keys of ``rndembqk``.
        rndembqk_std: their standard deviation.
    """

    model_type = "attnzoo_mixer_lm"
    keys_to_ignore_at_inference = ["cache"]

    vocab_size: int = 256
    hidden_size: int = 128
    num_hidden_layers: int | None = None
    num_attention_heads: int = 4
    intermediate_size: int | None = None
    mixers: str | list[str] = "softmax*4"
    max_position_embeddings: int = 256
    rms_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    use_cache: bool = True
    tie_word_embeddings: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    moh_shared_heads: int = 2
    moh_routed_heads: int = 1
    moh_aux_loss_coef: float = 0.01
    grassmann_reduced_dim: int = 32
    grassmann_windows: list[int] | None = None
    rndembqk_seed: int = 0
    rndembqk_std: float = 1.0

    def __post_init__(self, **kwargs):
        self.mixers = parse_mixers(self.mixers, self.num_hidden_layers)
        self.num_hidden_layers = len(self.mixers)
        if self.intermediate_size is None:
            self.intermediate_size = -(-8 * self.hidden_size // 3 // 16) * 16
        if self.grassmann_windows is None:
            self.grassmann_windows = [1, 2, 4, 8, 12, 16]
        self.grassmann_windows = [int(w) for w in self.grassmann_windows]
        super().__post_init__(**kwargs)
        self.validate_architecture()

    def validate_architecture(self):
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if "moh" in self.mixers:
            routed_pool = self.num_attention_heads - self.moh_shared_heads
            if self.moh_shared_heads < 0 or routed_pool < 0:
                raise ValueError(
                    f"moh_shared_heads ({self.moh_shared_heads}) must lie in [0, num_attention_heads="
                    f"{self.num_attention_heads}]"
                )
            if not 0 <= self.moh_routed_heads <= routed_pool:
                raise ValueError(
                    f"moh_routed_heads ({self.moh_routed_heads}) must lie in [0, num_attention_heads - "
                    f"moh_shared_heads = {routed_pool}]"
                )
            if self.moh_routed_heads == 0 and self.moh_shared_heads != self.num_attention_heads:
                raise ValueError(
                    f"with moh_routed_heads=0 every head is shared: moh_shared_heads ({self.moh_shared_heads})"
                    f" must equal num_attention_heads ({self.num_attention_heads})"
                )
        if "grassmann" in self.mixers:
            if self.grassmann_reduced_dim < 2:
                raise ValueError(f"grassmann_reduced_dim must be >= 2, got {self.grassmann_reduced_dim}")
            if not self.grassmann_windows or min(self.grassmann_windows) < 1:
                raise ValueError(f"grassmann_windows must be positive offsets, got {self.grassmann_windows}")
