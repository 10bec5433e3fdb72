"""attnzoo plugin of attnzoo-vision: the BiFormer models and their checkpoint converter, and MoH-ViT-S.

Torch-free on purpose: the zoo imports this module to list models. The model code
(``attnzoo_vision.biformer``, ``attnzoo_vision.moh``) is imported only when a model is built.
"""

from __future__ import annotations

from attnzoo import ConverterSpec, HubFile, InputSpec, ModelSpec, Paper, WeightEntry, hookimpl

# timm.data.IMAGENET_DEFAULT_MEAN / _STD, spelled out to keep this module torch-free
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BIFORMER_PAPER = Paper(
    title="BiFormer: Vision Transformer with Bi-Level Routing Attention",
    arxiv="2303.08810",
    code_url="https://github.com/rayleizhu/BiFormer",
)
MOH_PAPER = Paper(
    title="MoH: Multi-Head Attention as Mixture-of-Head Attention",
    arxiv="2410.11842",
    code_url="https://github.com/SkyworkAI/MoH",
)
BIFORMER_INPUT = InputSpec(
    kind="image",
    shape=(3, 224, 224),
    preprocess={"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "interpolation": "bicubic", "crop_pct": 0.875},
)

# name, official (timm) name, short hub name, ImageNet-1k top-1, params (M), GFLOPs at 224, official checkpoint
_VARIANTS = (
    (
        "biformer-t",
        "biformer_tiny",
        "tiny",
        81.4,
        13.1,
        2.2,
        "https://api.onedrive.com/v1.0/shares/s!AkBbczdRlZvChHEOoGkgwgQzEDlM/root/content",
    ),
    (
        "biformer-s",
        "biformer_small",
        "small",
        83.8,
        25.5,
        4.5,
        "https://api.onedrive.com/v1.0/shares/s!AkBbczdRlZvChHDyM-x9KWRBZ832/root/content",
    ),
    (
        "biformer-b",
        "biformer_base",
        "base",
        84.3,
        56.8,
        9.8,
        "https://api.onedrive.com/v1.0/shares/s!AkBbczdRlZvChHI_XPhoadjaNxtO/root/content",
    ),
    (
        "biformer-stl",
        "biformer_stl",
        "stl",
        82.7,
        28.4,
        4.6,
        "https://api.onedrive.com/v1.0/shares/s!AkBbczdRlZvChSf-m7ujkvx9lIQ1/root/content",
    ),
)


def _spec(
    name: str, official: str, short: str, top1: float, params_m: float, gflops: float, origin: str
) -> ModelSpec:
    metrics = {"top1": top1, "params_m": params_m, "gflops": gflops}
    layout = "Swin-T layout (ablation model)" if short == "stl" else f"BiFormer-{short[0].upper()}"
    return ModelSpec(
        name=name,
        builder=f"attnzoo_vision.biformer:{official}",
        family="biformer",
        task="image-classification",
        paper=BIFORMER_PAPER,
        license="MIT",
        aliases=(official,),
        config={"num_classes": 1000, "auto_pad": False},
        weights=(
            WeightEntry(
                tag="in1k",
                license="MIT",
                origin=origin,
                hub=HubFile(
                    repo_id=f"attnzoo/biformer-{short}", filename="model.safetensors", revision="main"
                ),
                sha256=None,
                metrics=metrics,
                notes="official ImageNet-1k checkpoint converted to safetensors; not yet published",
            ),
        ),
        input=BIFORMER_INPUT,
        metrics={**metrics, "resolution": 224, "dataset": "imagenet-1k"},
        description=f"{layout}: vision transformer with bi-level routing attention, ImageNet-1k classifier.",
        integrations={"timm": f"attnzoo_vision.biformer:{official}"},
    )


MOH_VIT_S = ModelSpec(
    name="moh-vit-s",
    builder="attnzoo_vision.moh:moh_vit_small",
    family="moh",
    task="image-classification",
    paper=MOH_PAPER,
    license="Apache-2.0",
    config={"num_classes": 1000, "shared_heads": 2, "routed_topk": 2},
    input=InputSpec(
        kind="image",
        shape=(3, 224, 224),
        preprocess={
            "mean": (0.5, 0.5, 0.5),
            "std": (0.5, 0.5, 0.5),
            "interpolation": "bicubic",
            "crop_pct": 0.9,
        },
    ),
    description=(
        "timm ViT-S/16 layout (vit_small_patch16_224) with MoH attention: 2 shared heads + top-2 of 4 "
        "routed heads per token, random init. No weights: the official MoH-ViT checkpoints "
        "(Chat-UniVi/MoH-ViT-*) are TransNeXt models, not this layout; a pretrained timm ViT-S loads "
        "into it except the routers (attnzoo_vision.moh.moh_vit)."
    ),
)


@hookimpl
def register_models(register):
    for variant in _VARIANTS:
        register(_spec(*variant))
    register(MOH_VIT_S)


@hookimpl
def register_converters(register):
    register(
        ConverterSpec(
            family="biformer",
            function="attnzoo_vision.biformer:convert_official",
            description="official BiFormer .pth ({'model': state_dict}); keys already match",
        )
    )
