"""MoH in vision: the timm drop-in, the ViT swap, the zoo model, and parity with the official MoH-ViT module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from attnzoo_vision.moh import (
    MoHAttention,
    MoHViTAttention,
    convert_official_moh_vit_attention,
    moh_load_balance_loss,
    moh_vit,
    moh_vit_small,
)
from timm.models.vision_transformer import Attention

PARITY = Path(__file__).parent / "data" / "moh_vit_attention_parity.npz"


def tiny_vit(**kwargs):
    defaults = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=6, num_classes=5)
    return timm.models.vision_transformer.VisionTransformer(**{**defaults, **kwargs})


def randomise(module, std=0.3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)
    return module


@pytest.mark.parametrize("qk_norm", [False, True])
def test_all_shared_heads_with_uniform_shared_router_equal_timm_attention(qk_norm):
    timm_attn = randomise(
        Attention(48, num_heads=6, qkv_bias=True, qk_norm=qk_norm, norm_layer=torch.nn.LayerNorm)
    )
    moh = MoHAttention(48, 6, qkv_bias=True, qk_norm=qk_norm, shared_heads=6, routed_topk=0)
    missing, unexpected = moh.load_state_dict(timm_attn.state_dict(), strict=False)
    assert missing == ["router.wg_1.weight"] and unexpected == []
    torch.nn.init.zeros_(moh.router.wg_1.weight)  # equal logits: every shared gate is 1
    x = torch.randn(2, 17, 48)
    torch.testing.assert_close(moh(x), timm_attn(x), rtol=1e-6, atol=1e-6)
    assert moh.last_aux_loss is None


def test_every_routed_head_kept_with_a_zero_router_equals_timm_attention():
    timm_attn = randomise(Attention(48, num_heads=6, qkv_bias=True))
    moh = MoHAttention.from_timm(timm_attn, shared_heads=2, routed_topk=4)
    for p in moh.router.parameters():
        torch.nn.init.zeros_(p)  # gates 2 * 1/2 * 1 for every head
    x = torch.randn(2, 9, 48)
    torch.testing.assert_close(moh(x), timm_attn(x), rtol=1e-6, atol=1e-6)


def test_routed_heads_change_the_output_and_only_kept_heads_contribute():
    timm_attn = randomise(Attention(48, num_heads=6))
    moh = randomise(MoHAttention.from_timm(timm_attn, shared_heads=2, routed_topk=1), seed=1)
    x = torch.randn(1, 7, 48)
    gates = moh.router(x).gates
    assert (gates[..., 2:] > 0).sum(-1).eq(1).all()
    assert not torch.allclose(moh(x), timm_attn(x), atol=1e-3)
    # the output is sum_h g_h * head_h projected: rebuild it from timm's per-head outputs
    qkv = timm_attn.qkv(x).reshape(1, 7, 3, 6, 8).permute(2, 0, 3, 1, 4)
    heads = torch.softmax(qkv[0] @ qkv[1].transpose(-2, -1) / 8**0.5, dim=-1) @ qkv[2]
    heads = heads * gates.transpose(1, 2).unsqueeze(-1)
    expected = timm_attn.proj(heads.transpose(1, 2).reshape(1, 7, 48))
    torch.testing.assert_close(moh(x), expected, rtol=1e-5, atol=1e-5)


def test_masks_and_the_attention_dropout_path_agree_with_the_kernel_path():
    moh = randomise(MoHAttention(48, 6, shared_heads=2, routed_topk=2, attn_drop=1e-30))
    x = torch.randn(2, 6, 48)
    mask = torch.rand(2, 1, 6, 6) > 0.3
    mask[..., 0] = True
    for kwargs in ({"attn_mask": mask}, {"is_causal": True}, {"attn_mask": torch.randn(2, 1, 6, 6)}):
        kernel_path = moh.eval()(x, **kwargs)
        manual_path = moh.train()(x, **kwargs)  # p = 1e-30: the dropout branch, nothing dropped
        torch.testing.assert_close(manual_path, kernel_path, rtol=1e-5, atol=1e-5)
    timm_attn = Attention(48, 6)
    timm_attn.load_state_dict({k: v for k, v in moh.state_dict().items() if "router" not in k})
    every_head = MoHAttention.from_timm(timm_attn, shared_heads=2, routed_topk=4).eval()
    for p in every_head.router.parameters():
        torch.nn.init.zeros_(p)  # all gates 1
    for kwargs in ({"attn_mask": mask}, {"is_causal": True}):
        torch.testing.assert_close(every_head(x, **kwargs), timm_attn(x, **kwargs), rtol=1e-5, atol=1e-5)


def test_moh_vit_swaps_every_block_and_a_pretrained_state_dict_loads():
    dense = randomise(tiny_vit(qkv_bias=True))
    state = dense.state_dict()
    model = moh_vit(tiny_vit(qkv_bias=True), shared_heads=2, topk=2)
    assert all(isinstance(block.attn, MoHAttention) for block in model.blocks)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert unexpected == []
    assert sorted(missing) == sorted(
        f"blocks.{i}.attn.router.{name}.weight" for i in range(2) for name in ("wg", "wg_0", "wg_1")
    )
    for i in range(2):
        torch.testing.assert_close(model.blocks[i].attn.qkv.weight, dense.blocks[i].attn.qkv.weight)
    # swapping a model in place keeps its weights too
    swapped = moh_vit(dense, shared_heads=6, topk=0)
    for block in swapped.blocks:
        torch.nn.init.zeros_(block.attn.router.wg_1.weight)
    reference = randomise(tiny_vit(qkv_bias=True))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(swapped(x), reference(x), rtol=1e-5, atol=1e-5)


def test_forward_backward_shapes_and_the_load_balance_loss():
    model = moh_vit(tiny_vit(), shared_heads=2, topk=2)
    x = torch.randn(2, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (2, 5)
    aux = moh_load_balance_loss(model)
    assert aux is not None and aux.shape == () and torch.isfinite(aux) and float(aux.detach()) > 0
    expected = torch.stack([b.attn.last_aux_loss for b in model.blocks]).mean()
    torch.testing.assert_close(aux, expected)
    (logits.square().mean() + 0.01 * aux).backward()
    router = model.blocks[0].attn.router
    assert router.wg.weight.grad is not None and router.wg.weight.grad.abs().sum() > 0
    assert router.wg_0.weight.grad.abs().sum() > 0 and model.blocks[1].attn.qkv.weight.grad is not None
    assert moh_load_balance_loss(moh_vit(tiny_vit(), shared_heads=6, topk=0)) is None


def test_bad_head_counts_and_unsupported_attentions_raise():
    with pytest.raises(ValueError, match="top-k"):
        MoHAttention(48, 6, shared_heads=2, routed_topk=5)
    with pytest.raises(ValueError, match="every head is shared"):
        MoHAttention(48, 6, shared_heads=2, routed_topk=0)
    with pytest.raises(ValueError, match="gated"):
        MoHAttention.from_timm(Attention(48, 6, gated=True), shared_heads=2, routed_topk=2)
    with pytest.raises(ValueError, match="blocks"):
        moh_vit(torch.nn.Linear(2, 2), shared_heads=1, topk=1)


def test_moh_vit_small_layout_on_the_meta_device():
    with torch.device("meta"):
        model = moh_vit_small()
        dense = timm.create_model("vit_small_patch16_224", pretrained=False)
    keys = set(model.state_dict())
    router_keys = keys - set(dense.state_dict())
    assert router_keys == {
        f"blocks.{i}.attn.router.{n}.weight" for i in range(12) for n in ("wg", "wg_0", "wg_1")
    }
    assert set(dense.state_dict()) <= keys
    extra = sum(model.state_dict()[k].numel() for k in router_keys)
    assert extra == 12 * 384 * (4 + 2 + 2)
    attn = model.blocks[0].attn
    assert (attn.router.shared_heads, attn.router.routed_heads, attn.num_heads) == (2, 2, 6)


def test_zoo_builds_moh_vit_s():
    import attnzoo as zoo

    card = zoo.info("moh-vit-s")
    assert card.family == "moh" and card.paper.arxiv == "2410.11842" and card.license == "Apache-2.0"
    assert card.weights == () and card.task == "image-classification"
    model = zoo.load("moh-vit-s", pretrained=False, img_size=32, num_classes=3, depth=1)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


CASES = {"s2r3": (2, 3), "s1r2": (1, 2), "s0r2": (0, 2), "s6r0": (6, 0)}


@pytest.mark.parametrize("case", CASES)
def test_moh_vit_attention_matches_the_official_module(case):
    data = np.load(PARITY)
    shared, routed = CASES[case]
    module = MoHViTAttention(48, (4, 4), num_heads=6, shared_head=shared, routed_head=routed)
    prefix = f"{case}/weight/"
    official = {k[len(prefix) :]: torch.from_numpy(data[k]) for k in data.files if k.startswith(prefix)}
    state = convert_official_moh_vit_attention(official)
    module.load_state_dict(state, strict=True)
    index = torch.from_numpy(data["relative_pos_index"])
    table = torch.from_numpy(data["relative_coords_table"])
    with torch.no_grad():
        out = module(torch.from_numpy(data[f"{case}/x"]), 4, 4, index, table)
    torch.testing.assert_close(out, torch.from_numpy(data[f"{case}/y"]), rtol=1e-5, atol=1e-5)
    if routed:
        assert float(module.last_aux_loss) == pytest.approx(float(data[f"{case}/aux_loss"]), rel=1e-5)
    else:
        assert module.last_aux_loss is None


def test_moh_vit_attention_checks_the_token_grid():
    module = MoHViTAttention(48, (4, 4), num_heads=6, shared_head=2, routed_head=2)
    with pytest.raises(ValueError, match="H \\* W"):
        module(torch.randn(1, 15, 48), 4, 4, torch.zeros(256, dtype=torch.long), torch.zeros(49, 2))
