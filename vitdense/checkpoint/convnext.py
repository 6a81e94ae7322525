"""ConvNeXt checkpoints: timm and facebookresearch/ConvNeXt (official) layouts -> vitdense."""
from timm.models.convnext import checkpoint_filter_fn

from .convert import register_converter


@register_converter('ConvNeXt')
def convert_convnext(sd, model, notes):
    if 'downsample_layers.0.0.weight' in sd:
        sd = checkpoint_filter_fn(sd, model)  # timm's own official -> timm remap
        notes.append('official facebookresearch/ConvNeXt layout remapped')
    return {k: v for k, v in sd.items() if not k.startswith(('head.', 'norm_pre.'))}
