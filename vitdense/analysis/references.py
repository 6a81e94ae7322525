"""Reference implementations to benchmark a vitdense backbone against (``tools/benchmark.py --compare``).

Keyed by the backbone's class itself (not its name, and not its parents: a subclass is another architecture,
e.g. BOAT's Swin, and has no reference until one is registered for it). Each builder takes the vitdense backbone and
returns an nn.Module with the same architecture, taking NCHW images and returning a sequence of NCHW maps (so it can
also stand in for the backbone inside a full model).
"""
from typing import Callable, Dict, Tuple

import torch.nn as nn

from vitdense.errors import ConfigError
from vitdense.models import ConvNeXt, SwinTransformer

REFERENCE_BACKBONES: Dict[type, Tuple[str, Callable[[nn.Module], nn.Module]]] = {}


def register_reference(backbone_cls: type, description: str):
    def wrap(builder):
        REFERENCE_BACKBONES[backbone_cls] = (description, builder)
        return builder
    return wrap


def reference_backbone(backbone: nn.Module) -> Tuple[str, nn.Module]:
    """(description, module) of the reference implementation for ``backbone``; one-line error if none."""
    if type(backbone) not in REFERENCE_BACKBONES:
        known = sorted(cls.__name__ for cls in REFERENCE_BACKBONES)
        raise ConfigError(f'no reference implementation registered for {type(backbone).__name__}; known: {known} '
                          '(add one with vitdense.analysis.references.register_reference)')
    description, builder = REFERENCE_BACKBONES[type(backbone)]
    reference = builder(backbone)
    reference.eval()  # (some train() overrides, e.g. mmdet's Swin, return None)
    return description, reference


@register_reference(SwinTransformer, "mmdet's SwinTransformer")
def _mmdet_swin(backbone):
    from mmdet.models.backbones import SwinTransformer as MMDetSwinTransformer
    fc1 = backbone.layers[0].blocks[0].mlp.fc1
    ratio = fc1.out_features / fc1.in_features
    return MMDetSwinTransformer(
        embed_dims=backbone.num_features[0], depths=backbone.depths,
        num_heads=[stage.blocks[0].attn.num_heads for stage in backbone.layers],
        window_size=backbone.window_size, patch_size=backbone.patch_embed.patch_size[0],
        mlp_ratio=int(ratio) if ratio.is_integer() else ratio, drop_path_rate=0.0,
        out_indices=backbone.out_indices)


class _TimmFeatures(nn.Module):
    """timm ``features_only`` model returning a tuple (heads index the outputs)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return tuple(self.model(x))


@register_reference(ConvNeXt, "timm's ConvNeXt (features_only)")
def _timm_convnext(backbone):
    import timm
    return _TimmFeatures(timm.create_model(
        'convnext_tiny', pretrained=False, features_only=True, out_indices=backbone.out_indices,
        depths=backbone.depths, dims=tuple(backbone.num_features), in_chans=backbone.in_channels))
