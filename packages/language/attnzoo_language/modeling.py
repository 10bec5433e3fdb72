"""A decoder-only language model whose token mixer is chosen per layer, native in transformers 5.

Pre-norm blocks ``x + mixer(RMSNorm(x))`` then ``x + SwiGLU(RMSNorm(x))``, learned absolute
position embeddings, a final RMSNorm and an output head tied to the token embedding. The mixers
come from :mod:`attnzoo_language.mixers` (softmax, MoH, Grassmann, Deconstructing-attention
variants); ``MixerLMConfig.mixers`` names one per layer, so a hybrid is one string.

Importing this module registers the config and models with ``AutoConfig``, ``AutoModel`` and
``AutoModelForCausalLM``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    DynamicCache,
    GenerationMixin,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .configuration import MixerLMConfig
from .mixers import MixerContext, build_mixer
from .mixers.deconstructed import RndEmbQKAttention, fixed_random_embeddings

__all__ = [
    "MixerLMConfig",
    "MixerLMModel",
    "MixerLMForCausalLM",
    "MixerLMOutput",
    "MixerLMCausalLMOutput",
    "build_mixer_lm",
    "mixer_lm_softmax_tiny",
    "mixer_lm_moh_tiny",
    "mixer_lm_grassmann_tiny",
    "mixer_lm_hybrid_tiny",
    "mixer_lm_mlp_tiny",
    "mixer_lm_taylor_tiny",
    "mixer_lm_elementwise_tiny",
    "mixer_lm_rndembqk_tiny",
    "mixer_lm_staticembqk_tiny",
    "mixer_lm_mlp_hybrid_tiny",
    "TINY_CONFIG",
]


class MixerLMRMSNorm(nn.Module):
    """RMSNorm ``x / rms(x) * w``, computed in float32."""

    def __init__(self, width: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class MixerLMSwiGLU(nn.Module):
    """The channel MLP ``W_down(SiLU(W_gate x) * W_up x)``."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(width, hidden, bias=False)
        self.up_proj = nn.Linear(width, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MixerLMBlock(nn.Module):
    """One pre-norm decoder block with the token mixer ``config.mixers[layer_idx]``."""

    def __init__(self, config: MixerLMConfig, layer_idx: int):
        super().__init__()
        self.mixer_norm = MixerLMRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mixer = build_mixer(config.mixers[layer_idx], config, layer_idx)
        self.mlp_norm = MixerLMRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MixerLMSwiGLU(config.hidden_size, config.intermediate_size)

    def forward(self, x: torch.Tensor, ctx: MixerContext) -> tuple[torch.Tensor, torch.Tensor | None]:
        mixed, aux = self.mixer(self.mixer_norm(x), ctx)
        x = x + mixed
        return x + self.mlp(self.mlp_norm(x)), aux


@dataclass
class MixerLMOutput(BaseModelOutputWithPast):
    """``BaseModelOutputWithPast`` plus ``aux_loss``: the mean MoH load-balance loss over MoH layers."""

    aux_loss: torch.Tensor | None = None


@dataclass
class MixerLMCausalLMOutput(CausalLMOutputWithPast):
    """``CausalLMOutputWithPast`` plus ``aux_loss`` (added to ``loss`` times ``moh_aux_loss_coef`` in training)."""

    aux_loss: torch.Tensor | None = None


class MixerLMPreTrainedModel(PreTrainedModel):
    config_class = MixerLMConfig
    config: MixerLMConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _no_split_modules = ["MixerLMBlock"]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, RndEmbQKAttention):
            init.copy_(
                module.fixed_embeddings,
                fixed_random_embeddings(*module.fixed_embeddings.shape, seed=module.seed, std=module.std),
            )


def _attention_bias(
    attention_mask: torch.Tensor | None, past: int, new: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor | None:
    """The additive mask ``(batch or 1, 1, new, past + new)``, or None when a plain causal mask says it all."""
    if attention_mask is not None and bool((attention_mask == 0).any()):
        keys = attention_mask[:, -(past + new) :].bool()
    elif past > 0 and new > 1:
        keys = None
    else:
        return None
    query_pos = torch.arange(past, past + new, device=device)
    key_pos = torch.arange(past + new, device=device)
    keep = (key_pos[None, :] <= query_pos[:, None])[None, None]
    if keys is not None:
        keep = keep & keys[:, None, None, :]
        # A fully padded query row (left padding) attends to itself so softmax stays finite.
        keep = keep | (key_pos[None, :] == query_pos[:, None])[None, None]
    bias = torch.zeros(keep.shape, dtype=dtype, device=device)
    return bias.masked_fill(~keep, float("-inf"))


class MixerLMModel(MixerLMPreTrainedModel):
    """The decoder stack; returns the final normalised hidden states."""

    def __init__(self, config: MixerLMConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.layers = nn.ModuleList(MixerLMBlock(config, i) for i in range(config.num_hidden_layers))
        self.norm = MixerLMRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> MixerLMOutput:
        if "past_key_values" in kwargs:
            cache = kwargs.pop("past_key_values") if cache is None else cache
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            if input_ids.dim() != 2:
                raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
            inputs_embeds = self.embed_tokens(input_ids)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = DynamicCache()
        batch, new, _ = inputs_embeds.shape
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + new, device=inputs_embeds.device).expand(batch, new)
        if int(position_ids.max()) >= self.config.max_position_embeddings:
            raise ValueError(
                f"position {int(position_ids.max())} is past max_position_embeddings="
                f"{self.config.max_position_embeddings}"
            )
        hidden = inputs_embeds + self.embed_positions(position_ids)
        ctx = MixerContext(
            cache=cache if use_cache else None,
            attn_bias=_attention_bias(attention_mask, past, new, hidden.dtype, hidden.device),
            past_length=past,
            position_ids=position_ids,
            input_embeddings=hidden,
        )
        aux_losses = []
        for layer in self.layers:
            hidden, aux = layer(hidden, ctx)
            if aux is not None:
                aux_losses.append(aux)
        aux_loss = torch.stack(aux_losses).mean() if aux_losses else None
        return MixerLMOutput(
            last_hidden_state=self.norm(hidden), cache=cache if use_cache else None, aux_loss=aux_loss
        )


class MixerLMForCausalLM(MixerLMPreTrainedModel, GenerationMixin):
    """The mixer LM with its tied output head; ``loss`` is next-token cross-entropy (+ MoH balance in training)."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: MixerLMConfig):
        super().__init__(config)
        self.model = MixerLMModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> MixerLMCausalLMOutput:
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden = out.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                labels[:, 1:].reshape(-1),
                ignore_index=-100,
            )
            if self.training and out.aux_loss is not None:
                loss = loss + self.config.moh_aux_loss_coef * out.aux_loss
        return MixerLMCausalLMOutput(loss=loss, logits=logits, cache=out.cache, aux_loss=out.aux_loss)


AutoConfig.register(MixerLMConfig.model_type, MixerLMConfig, exist_ok=True)
AutoModel.register(MixerLMConfig, MixerLMModel, exist_ok=True)
AutoModelForCausalLM.register(MixerLMConfig, MixerLMForCausalLM, exist_ok=True)


# -- builders: the zoo calls ``builder(**config)`` -------------------------------------------------

TINY_CONFIG = dict(
    vocab_size=256, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, max_position_embeddings=256
)


def build_mixer_lm(**config) -> MixerLMForCausalLM:
    """A :class:`MixerLMForCausalLM` from :class:`MixerLMConfig` keyword arguments (``mixers="..."`` etc.)."""
    return MixerLMForCausalLM(MixerLMConfig(**config))


def _tiny(default_mixers: str, **overrides) -> MixerLMForCausalLM:
    return build_mixer_lm(**{**TINY_CONFIG, "mixers": default_mixers, **overrides})


def mixer_lm_softmax_tiny(**overrides) -> MixerLMForCausalLM:
    """Byte-level, d=128, 4 layers of standard softmax attention (~0.85M parameters)."""
    return _tiny("softmax", **overrides)


def mixer_lm_moh_tiny(**overrides) -> MixerLMForCausalLM:
    """4 layers of MoH attention: 4 heads, 2 shared, top-1 of the 2 routed (75% of heads active)."""
    return _tiny("moh", **{"moh_shared_heads": 2, "moh_routed_heads": 1, **overrides})


def mixer_lm_grassmann_tiny(**overrides) -> MixerLMForCausalLM:
    """4 Causal Grassmann layers, r=32, offsets {1, 2, 4, 8, 12, 16}."""
    return _tiny("grassmann", **overrides)


def mixer_lm_hybrid_tiny(**overrides) -> MixerLMForCausalLM:
    """Grassmann and softmax layers alternating (``grassmann,softmax`` tiled over 4 layers)."""
    return _tiny("grassmann,softmax", **overrides)


def mixer_lm_mlp_tiny(**overrides) -> MixerLMForCausalLM:
    """Deconstructing attention, no token mixing: 4 gated-MLP mixers."""
    return _tiny("mlp", **overrides)


def mixer_lm_taylor_tiny(**overrides) -> MixerLMForCausalLM:
    """Deconstructing attention, approximate form: Taylor-softmax attention in every layer."""
    return _tiny("taylor", **overrides)


def mixer_lm_elementwise_tiny(**overrides) -> MixerLMForCausalLM:
    """Deconstructing attention, non-approximate form: element-wise self-gated scores in every layer."""
    return _tiny("elementwise", **overrides)


def mixer_lm_rndembqk_tiny(**overrides) -> MixerLMForCausalLM:
    """Deconstructing attention, sequence-independent maps: fixed random Q/K embeddings in every layer."""
    return _tiny("rndembqk", **overrides)


def mixer_lm_staticembqk_tiny(**overrides) -> MixerLMForCausalLM:
    """Deconstructing attention, Q/K from the static input embeddings in every layer."""
    return _tiny("staticembqk", **overrides)


def mixer_lm_mlp_hybrid_tiny(**overrides) -> MixerLMForCausalLM:
    """The paper's hybrid: the variant (here the MLP) in odd layers 1, 3 and softmax in even layers 2, 4."""
    return _tiny("mlp,softmax", **overrides)
