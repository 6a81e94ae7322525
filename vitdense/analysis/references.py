"""Reference implementations to benchmark a vitdense backbone against (``tools/benchmark.py --compare``).

Keyed by the backbone's class itself (not its name, and not its parents: a subclass is another architecture,
e.g. BOAT's Swin, and has no reference until one is registered for it); a class may have several references (the
implementations a user could pick instead), compared in one run. Each builder takes the vitdense backbone and the
input size (H, W) and returns an nn.Module with the same architecture, taking NCHW images and returning a sequence
of NCHW maps (so it can also stand in for the backbone inside a full model).
"""
from typing import Callable, Dict, List, Tuple

import torch.nn as nn

from vitdense.errors import ConfigError
from vitdense.models import ConvNeXt, SwinTransformer

Builder = Callable[[nn.Module, Tuple[int, int]], nn.Module]
REFERENCE_BACKBONES: Dict[type, List[Tuple[str, Builder]]] = {}


def register_reference(backbone_cls: type, description: str):
    def wrap(builder):
        REFERENCE_BACKBONES.setdefault(backbone_cls, []).append((description, builder))
        return builder
    return wrap


def reference_backbones(backbone: nn.Module, image_size: Tuple[int, int] = (512, 512)
                        ) -> List[Tuple[str, nn.Module]]:
    """(description, module) of every reference implementation of ``backbone``, built for ``image_size`` (timm's
    Swin fixes its input size at construction); one-line error if there is none."""
    if type(backbone) not in REFERENCE_BACKBONES:
        known = sorted(cls.__name__ for cls in REFERENCE_BACKBONES)
        raise ConfigError(f'no reference implementation registered for {type(backbone).__name__}; known: {known} '
                          '(add one with vitdense.analysis.references.register_reference)')
    built = []
    for description, builder in REFERENCE_BACKBONES[type(backbone)]:
        reference = builder(backbone, tuple(image_size))
        reference.eval()  # (some train() overrides, e.g. mmdet's Swin, return None)
        built.append((description, reference))
    return built


@register_reference(SwinTransformer, "mmdet's SwinTransformer")
def _mmdet_swin(backbone, image_size):
    from mmdet.models.backbones import SwinTransformer as MMDetSwinTransformer
    fc1 = backbone.layers[0].blocks[0].mlp.fc1
    ratio = fc1.out_features / fc1.in_features
    return MMDetSwinTransformer(
        embed_dims=backbone.num_features[0], depths=backbone.depths,
        num_heads=_swin_heads(backbone),
        window_size=backbone.window_size, patch_size=backbone.patch_embed.patch_size[0],
        mlp_ratio=int(ratio) if ratio.is_integer() else ratio, drop_path_rate=0.0,
        out_indices=backbone.out_indices)


class _TimmFeatures(nn.Module):
    """timm ``features_only`` model returning a tuple of NCHW maps (heads index the outputs)."""

    def __init__(self, model: nn.Module, channels_last_output: bool = False):
        super().__init__()
        self.model = model
        self.channels_last_output = channels_last_output  # timm's Swin hands out NHWC maps

    def forward(self, x):
        outs = self.model(x)
        if self.channels_last_output:
            outs = [o.permute(0, 3, 1, 2) for o in outs]
        return tuple(outs)


def _swin_heads(backbone):
    return [stage.blocks[0].attn.num_heads for stage in backbone.layers]


# timm's Swin is built for one input size and shrinks a window to a feature map smaller than it
@register_reference(SwinTransformer, "timm's SwinTransformer (features_only, input size fixed)")
def _timm_swin(backbone, image_size):
    import timm
    fc1 = backbone.layers[0].blocks[0].mlp.fc1
    return _TimmFeatures(timm.create_model(
        'swin_tiny_patch4_window7_224', pretrained=False, features_only=True, img_size=image_size,
        out_indices=backbone.out_indices, embed_dim=backbone.num_features[0], depths=backbone.depths,
        num_heads=_swin_heads(backbone), window_size=backbone.window_size,
        patch_size=backbone.patch_embed.patch_size[0], mlp_ratio=fc1.out_features / fc1.in_features,
        drop_path_rate=0.0),
        channels_last_output=True)


@register_reference(ConvNeXt, "timm's ConvNeXt (features_only)")
def _timm_convnext(backbone, image_size):
    import timm
    return _TimmFeatures(timm.create_model(
        'convnext_tiny', pretrained=False, features_only=True, out_indices=backbone.out_indices,
        depths=backbone.depths, dims=tuple(backbone.num_features), in_chans=backbone.in_channels,
        drop_path_rate=0.0))


@register_reference(ConvNeXt, "mmpretrain's ConvNeXt (mmdet's ConvNeXt configs use it)")
def _mmpretrain_convnext(backbone, image_size):
    from mmpretrain.models.backbones import ConvNeXt as MMPretrainConvNeXt
    arch = dict(depths=list(backbone.depths), channels=list(backbone.num_features))
    return MMPretrainConvNeXt(arch=arch, in_channels=backbone.in_channels, out_indices=backbone.out_indices,
                              gap_before_final_norm=False, drop_path_rate=0.0)
