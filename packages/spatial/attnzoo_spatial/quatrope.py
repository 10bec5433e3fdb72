"""QuatRoPE object tokens and IGRE for Hugging Face LLaMA-family attention (Zhou et al., arXiv 2603.24721).

QuatRoPE adds, for object tokens only (IGRE: the Isolated Gated RoPE Extension), a score term that
depends on the 3-D positions of the two tokens, while the LLM's own RoPE runs untouched::

    score(i, j) = (RoPE(q_i) . RoPE(k_j) + g_i g_j s(p_i, p_j)) * scale

* ``compat="official"`` — the released *igre* path (oceanflowlab/QuatRoPE): ``s = r_i . r_j`` with
  ``r = Rz(γz) Ry(γy) Rx(γx) (1, 0, 0)``, the scalar ``γ = base**(-3/head_dim)`` rounded through float32,
  the gate ``g`` equal to 1 on every token from the first to the last token with a non-zero position
  (zero-position tokens inside that span included, unrotated), ``scale = head_dim**-0.5`` as its eager
  attention (``official_scaling="sdpa"`` gives its SDPA class: ``(head_dim + 3)**-0.5`` on every score),
  and tokens after the given positions (the generated ones) zero-padded.
* ``compat="paper"`` — the relative quaternion form: ``s = <e, r e r*>`` with ``r = exp(γ (p_j - p_i)/2)``
  over all three coordinates, gated by an explicit ``object_mask``; object-object scores depend on
  ``p_j - p_i`` only. Written from the paper's abstract: its method section's equations could not be
  read, so this mode is not checked against them (docs/models/quatrope.md lists what is confirmed).

Object positions travel with the inputs as extra forward keywords, which ``generate()`` carries to
every step and ``LlamaModel`` hands down to each attention layer::

    model = attnzoo_spatial.patch(LlamaForCausalLM(config), compat="official")
    out = model.generate(input_ids, object_positions=xyz, max_new_tokens=8)   # xyz: (B, L, 3)

``object_positions`` is ``(batch, L_obj, 3)`` aligned with the first ``L_obj`` tokens of the sequence
(rows of non-object tokens are zero); ``object_mask`` (paper only) is ``(batch, L_obj)`` bool.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "COMPAT_MODES",
    "QuatRoPESettings",
    "convert_official",
    "is_patched",
    "merge_lora",
    "official_object_gate",
    "patch",
    "quatrope_bias",
    "quatrope_llama_tiny",
    "unpatch",
]

COMPAT_MODES = ("official", "paper")
_OFFICIAL_SCALINGS = ("eager", "sdpa")
_BIAS_FREE_BACKENDS = ("flash_attention_2", "flash_attention_3", "flex_attention")


@dataclass(frozen=True)
class QuatRoPESettings:
    """How one patched attention layer computes the QuatRoPE term."""

    compat: str
    rot_factor: float
    official_scaling: str = "eager"
    axis: tuple[float, float, float] = (1.0, 0.0, 0.0)


def official_object_gate(object_positions: Tensor) -> Tensor:
    """The released code's choice of extended tokens: from the first to the last token with a non-zero position.

    ``object_positions``: ``(batch, L, 3)``. Returns a ``(batch, L)`` float gate. A row of all-zero
    positions has no extended token.
    """
    nonzero = (object_positions != 0).any(dim=-1)
    index = torch.arange(nonzero.shape[-1], device=nonzero.device)
    first = torch.where(nonzero, index, nonzero.shape[-1]).amin(dim=-1, keepdim=True)
    last = torch.where(nonzero, index, -1).amax(dim=-1, keepdim=True)
    return ((index >= first) & (index <= last)).to(object_positions.dtype)


def quatrope_bias(
    settings: QuatRoPESettings,
    object_positions: Tensor,
    object_mask: Tensor | None,
    query_index: Tensor,
    key_index: Tensor,
) -> Tensor | None:
    """The unscaled QuatRoPE score term ``(batch, Lq, Lk)`` for sequence indices ``query_index``/``key_index``.

    Positions beyond ``object_positions`` (generated tokens) are zero-padded, that is non-object.
    Returns None when no queried pair involves two extended tokens, so attention stays untouched.
    """
    from attnzoo_kernels.ops.rotary import quat_relative, quat_rotation

    total = int(max(query_index.max().item(), key_index.max().item())) + 1
    positions, gate = _padded_objects(settings, object_positions, object_mask, total)
    gate_q, gate_k = gate[:, query_index], gate[:, key_index]
    if not (bool(gate_q.any()) and bool(gate_k.any())):
        return None
    if settings.compat == "official":
        turned = quat_rotation(positions, gate, settings.rot_factor)
        return turned[:, query_index] @ turned[:, key_index].transpose(1, 2)
    return quat_relative(
        positions[:, query_index], positions[:, key_index], gate_q, gate_k, settings.rot_factor, settings.axis
    )


def _check_object_positions(object_positions: Tensor, batch: int | None = None) -> None:
    if object_positions.dim() != 3 or object_positions.shape[-1] != 3:
        raise ValueError(
            f"object_positions must be (batch, length, 3) object coordinates; got {tuple(object_positions.shape)}"
        )
    if batch is not None and object_positions.shape[0] != batch:
        raise ValueError(
            f"object_positions has batch {object_positions.shape[0]}, but the inputs have batch {batch}"
        )


def _padded_objects(
    settings: QuatRoPESettings, object_positions: Tensor, object_mask: Tensor | None, total: int
) -> tuple[Tensor, Tensor]:
    _check_object_positions(object_positions)
    positions = object_positions if object_positions.is_floating_point() else object_positions.float()
    if settings.compat == "official":
        if object_mask is not None:
            raise ValueError(
                "compat='official' takes the extended tokens from the non-zero object_positions span "
                "(as the released igre code); pass object_mask only with compat='paper'"
            )
        gate = official_object_gate(positions)
    elif object_mask is None:
        gate = (positions != 0).any(dim=-1).to(positions.dtype)
    else:
        if object_mask.shape != object_positions.shape[:2]:
            raise ValueError(
                f"object_mask must be (batch, length) = {tuple(object_positions.shape[:2])}; "
                f"got {tuple(object_mask.shape)}"
            )
        gate = object_mask.to(device=positions.device, dtype=positions.dtype)
    positions, gate = positions[:, :total], gate[:, :total]
    missing = total - positions.shape[1]
    if missing > 0:
        positions = nn.functional.pad(positions, (0, 0, 0, missing))
        gate = nn.functional.pad(gate, (0, missing))
    return positions, gate


def _additive_mask(
    attention_mask: Tensor | None, query_index: Tensor, key_index: Tensor, dtype: torch.dtype
) -> Tensor:
    """Any mask the model built (None = causal, bool = keep, float = additive) as a float additive mask."""
    zero = torch.zeros((), dtype=dtype, device=query_index.device)
    blocked = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=query_index.device)
    if attention_mask is None:
        keep = query_index[:, None] >= key_index[None, :]
        return torch.where(keep, zero, blocked)[None, None]
    attention_mask = attention_mask[..., : key_index.numel()]
    if attention_mask.dtype == torch.bool:
        return torch.where(attention_mask, zero, blocked)
    return attention_mask.to(dtype)


def _quatrope_attention_forward(
    self: nn.Module,
    hidden_states: Tensor,
    position_embeddings: tuple[Tensor, Tensor] | None = None,
    attention_mask: Tensor | None = None,
    cache: Any = None,
    **kwargs: Any,
) -> tuple[Tensor, Tensor | None]:
    """LLaMA attention with the QuatRoPE term added to the object-object scores (bound per layer by ``patch``)."""
    from attnzoo_kernels.ops.rotary import rope
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.llama.modeling_llama import eager_attention_forward

    settings: QuatRoPESettings = self._quatrope
    if cache is None:
        cache = kwargs.pop("past_key_values", None)
    object_positions = kwargs.pop("object_positions", None)
    object_mask = kwargs.pop("object_mask", None)

    input_shape = hidden_states.shape[:-1]
    hidden_shape = (*input_shape, -1, self.head_dim)
    query_states = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
    key_states = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
    value_states = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)

    cos, sin = position_embeddings
    query_states = rope(query_states, cos.unsqueeze(1), sin.unsqueeze(1))
    key_states = rope(key_states, cos.unsqueeze(1), sin.unsqueeze(1))

    past_length = cache.get_seq_length(self.layer_idx) if cache is not None else 0
    if cache is not None:
        key_states, value_states = cache.update(key_states, value_states, self.layer_idx, kwargs=kwargs)

    scaling = self.scaling
    if object_positions is not None:
        _check_object_positions(object_positions, batch=query_states.shape[0])
        if settings.compat == "official" and settings.official_scaling == "sdpa":
            # the released SDPA class leaves SDPA's default scale, now over head_dim + 3 channels
            scaling = (self.head_dim + 3) ** -0.5
        q_length, kv_length = query_states.shape[-2], key_states.shape[-2]
        device = query_states.device
        query_index = torch.arange(past_length, past_length + q_length, device=device)
        key_index = torch.arange(kv_length, device=device)
        # decoding past the given positions: every query is a non-object, so no term (and no device sync)
        bias = None
        if past_length < object_positions.shape[1]:
            bias = quatrope_bias(settings, object_positions.to(device), object_mask, query_index, key_index)
        if bias is not None:
            if self.config._attn_implementation in _BIAS_FREE_BACKENDS:
                raise ValueError(
                    f"QuatRoPE adds an additive score term, which attn_implementation="
                    f"{self.config._attn_implementation!r} cannot take; use 'sdpa' or 'eager'"
                )
            base = _additive_mask(attention_mask, query_index, key_index, query_states.dtype)
            # the mask is added after scaling, the extension's dot product before it
            attention_mask = base + (bias * scaling).unsqueeze(1).to(query_states.dtype)

    attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
        self.config._attn_implementation, eager_attention_forward
    )
    attn_output, attn_weights = attention_interface(
        self,
        query_states,
        key_states,
        value_states,
        attention_mask,
        dropout=0.0 if not self.training else self.attention_dropout,
        scaling=scaling,
        **kwargs,
    )
    attn_output = attn_output.reshape(*input_shape, -1).contiguous()
    return self.o_proj(attn_output), attn_weights


def _attention_layers(model: nn.Module) -> list[nn.Module]:
    layers = []
    for module in model.modules():
        if not all(
            hasattr(module, name)
            for name in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "layer_idx")
        ):
            continue
        if hasattr(module, "q_norm") or hasattr(module, "k_norm"):
            raise ValueError(
                f"{type(module).__name__} normalises q/k before RoPE; QuatRoPE's patch supports LLaMA-style "
                "attention (q_proj, k_proj, v_proj, o_proj, RoPE) only"
            )
        layers.append(module)
    return layers


def patch(
    model: nn.Module,
    compat: str = "official",
    *,
    rot_factor: float | None = None,
    base: float | None = None,
    official_scaling: str = "eager",
    axis: tuple[float, float, float] = (1.0, 0.0, 0.0),
) -> nn.Module:
    """Swap the forward of every LLaMA-family attention layer of ``model`` for the QuatRoPE one, in place.

    ``compat``: ``"official"`` (released igre path, quirks included) or ``"paper"`` (relative quaternion
    form). ``rot_factor``: the scalar frequency γ; by default ``base**(-3/head_dim)`` as the release
    computes it, with ``base`` the model's ``rope_theta`` unless given. ``official_scaling``: ``"eager"``
    (scores over sqrt(head_dim)) or ``"sdpa"`` (over sqrt(head_dim + 3), what the release's SDPA class
    does). ``axis``: the unit vector ``e`` the paper form rotates. Returns ``model``.
    """
    from attnzoo_kernels.ops.rotary import official_rot_factor

    if compat not in COMPAT_MODES:
        raise ValueError(f"compat must be one of {COMPAT_MODES}; got {compat!r}")
    if official_scaling not in _OFFICIAL_SCALINGS:
        raise ValueError(f"official_scaling must be one of {_OFFICIAL_SCALINGS}; got {official_scaling!r}")
    if compat == "paper" and official_scaling != "eager":
        raise ValueError("official_scaling applies to compat='official' only")
    if len(axis) != 3 or not any(axis):
        raise ValueError(f"axis must be a non-zero 3-vector; got {axis!r}")
    layers = _attention_layers(model)
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no LLaMA-style attention layer (q_proj, k_proj, v_proj, o_proj, layer_idx)"
        )
    for layer in layers:
        if base is None:
            rope_parameters = getattr(layer.config, "rope_parameters", None) or {}
            layer_base = rope_parameters.get("rope_theta", getattr(layer.config, "rope_theta", 10000.0))
        else:
            layer_base = base
        factor = official_rot_factor(layer.head_dim, layer_base) if rot_factor is None else float(rot_factor)
        layer._quatrope = QuatRoPESettings(compat, factor, official_scaling, tuple(float(a) for a in axis))
        layer.forward = types.MethodType(_quatrope_attention_forward, layer)
    if hasattr(model, "generate"):
        # generate() forwards only keywords named in the top-level forward's signature
        model._quatrope_root = True
        model.forward = types.MethodType(_forward_with_objects, model)
    return model


def _forward_with_objects(
    self: nn.Module,
    *args: Any,
    object_positions: Tensor | None = None,
    object_mask: Tensor | None = None,
    **kwargs: Any,
) -> Any:
    """The model's own forward, with the QuatRoPE inputs named so that ``generate()`` carries them."""
    if object_positions is not None:
        kwargs["object_positions"] = object_positions
    if object_mask is not None:
        kwargs["object_mask"] = object_mask
    return type(self).forward(self, *args, **kwargs)


def unpatch(model: nn.Module) -> nn.Module:
    """Restore the class forward of every layer ``patch`` touched."""
    for module in model.modules():
        for marker in ("_quatrope", "_quatrope_root"):
            if hasattr(module, marker):
                delattr(module, marker)
                module.__dict__.pop("forward", None)
    return model


def is_patched(model: nn.Module) -> bool:
    """Whether ``patch`` has been applied to any layer of ``model``."""
    return any(hasattr(module, "_quatrope") for module in model.modules())


def quatrope_llama_tiny(
    compat: str = "official",
    vocab_size: int = 256,
    hidden_size: int = 64,
    intermediate_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    max_position_embeddings: int = 512,
    rope_theta: float = 10000.0,
    attn_implementation: str = "sdpa",
    **patch_options: Any,
) -> nn.Module:
    """A tiny random-init ``LlamaForCausalLM`` with QuatRoPE patched in, for demos and tests."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        rope_theta=rope_theta,
        tie_word_embeddings=False,
    )
    config._attn_implementation = attn_implementation
    return patch(LlamaForCausalLM(config), compat=compat, **patch_options)


# Official checkpoints (fzzsl/QuatRoPE: quatrope-igre-m3d-finetune-7b-knn-{0,2}.pth) hold
# {"model": trainable state dict, "config": ..., "epoch", "global_step"} of the 3DGraphLLM/Chat-Scene
# wrapper: PEFT LoRA factors of the Vicuna-7B decoder, the resized token embedding and lm_head, and the
# object/image/edge projectors. The QuatRoPE term itself has no weights.
_LLM_PREFIXES = ("llama_model.base_model.model.", "llama_model.")
_LORA_KEY = re.compile(
    r"^(model\.layers\.\d+\.(?:self_attn|mlp)\.\w+_proj)\.(lora_[AB])(?:\.default)?\.weight$"
)
# pos_embedding.gauss_B is a persistent buffer; the training script drops only frozen *parameters*
_PROJECTOR_PREFIXES = (
    "object_proj.",
    "object_img_proj.",
    "edge_proj.",
    "pos_proj.",
    "coord_proj.",
    "pos_embedding.",
)
_DECODER_KEYS = ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight")


def convert_official(checkpoint: Any, spec: Any = None) -> dict[str, Tensor]:
    """Map an official QuatRoPE ``.pth`` (3DGraphLLM wrapper, PEFT LoRA) to flat PEFT-free keys.

    LoRA factors become ``model.layers.{i}.{self_attn|mlp}.{name}_proj.lora_A.weight`` / ``lora_B.weight``,
    the decoder's trained full tensors keep their Hugging Face LLaMA names (``model.embed_tokens.weight``,
    ``lm_head.weight``), and the 3-D scene projectors go under ``projector.``. ``merge_lora`` folds the
    factors into a Vicuna-7B state dict. ``spec`` is unused (one layout for every QuatRoPE checkpoint).
    """
    from attnzoo.checkpoints import unwrap_state_dict
    from attnzoo.errors import ConverterError

    state = unwrap_state_dict(checkpoint, keys=("model", "state_dict"))
    converted: dict[str, Tensor] = {}
    for key, tensor in state.items():
        if key.startswith(_PROJECTOR_PREFIXES):
            converted[f"projector.{key}"] = tensor
            continue
        prefix = next((p for p in _LLM_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            raise ConverterError(
                f"quatrope: unexpected key {key!r} (neither llama_model.* nor a scene projector)"
            )
        inner = key[len(prefix) :]
        lora = _LORA_KEY.match(inner)
        if lora is not None:
            converted[f"{lora.group(1)}.{lora.group(2)}.weight"] = tensor
        elif inner in _DECODER_KEYS:
            converted[inner] = tensor
        else:
            raise ConverterError(f"quatrope: unexpected decoder key {key!r}")
    if not converted:
        raise ConverterError("quatrope: the checkpoint holds no tensors")
    return converted


def merge_lora(
    base: Mapping[str, Tensor], converted: Mapping[str, Tensor], scaling: float
) -> dict[str, Tensor]:
    """Fold ``convert_official`` LoRA factors into a LLaMA state dict: ``W + scaling * B @ A``.

    ``scaling`` is ``lora_alpha / lora_r`` (1.0 for the released runs: r = alpha = 16). Full tensors in
    ``converted`` (embeddings, lm_head) replace the base ones; projector keys are left out.
    """
    merged = dict(base)
    for key, tensor in converted.items():
        if key.startswith("projector."):
            continue
        if key.endswith(".lora_A.weight"):
            target = key.removesuffix(".lora_A.weight") + ".weight"
            up = converted.get(key.replace("lora_A", "lora_B"))
            if up is None:
                raise ValueError(f"merge_lora: {key} has no matching lora_B")
            if target not in merged:
                raise ValueError(f"merge_lora: base state dict has no {target}")
            weight = merged[target]
            merged[target] = (weight.double() + scaling * (up.double() @ tensor.double())).to(weight.dtype)
        elif not key.endswith(".lora_B.weight"):
            merged[key] = tensor
    return merged
