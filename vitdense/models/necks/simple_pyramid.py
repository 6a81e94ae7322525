"""ViTDet's simple feature pyramid (Li et al., ECCV 2022, arXiv 2203.16527): one stride-16 map -> strides 4/8/16/32.

A plain ViT keeps one token map at stride 16. ViTDet showed that rescaling that single (last) map is enough
for dense heads: two 2x2 stride-2 deconvolutions (with LayerNorm + GELU between) for stride 4, one for
stride 8, the map itself for stride 16 and a 2x2 max-pool for stride 32. Channels follow ViTDet: C/4, C/2,
C, C, so the high-resolution levels stay cheap.

Two uses:

* inside :class:`vitdense.models.backbones.VisionTransformer` / :class:`~vitdense.models.backbones.CeiT` as
  their multi-scale adapter (``out_channels=None``): the backbone then keeps the DenseBackbone contract (a
  4-level pyramid, per-level output norms, out_indices, frozen stages), so mmdet's FPN and mmseg's UperNet
  take it like any pyramid backbone; ``image_size`` crops each level to exactly ceil(H / stride).
* as a registered neck after any single-map backbone (``type='vitdense.SimpleFeaturePyramid'``), with
  ``out_channels`` set it adds ViTDet's per-level 1x1 + 3x3 convolutions (each followed by a LayerNorm),
  i.e. the whole ViTDet neck.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from timm.layers import LayerNorm2d

from vitdense.errors import ConfigError
from vitdense.registry import MODELS

_LEVEL_CHANNEL_DIVISOR = {4.0: 4, 2.0: 2, 1.0: 1, 0.5: 1}


def _rescale(in_channels: int, scale: float) -> List[nn.Module]:
    if scale == 4.0:
        return [nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2),
                LayerNorm2d(in_channels // 2), nn.GELU(),
                nn.ConvTranspose2d(in_channels // 2, in_channels // 4, kernel_size=2, stride=2)]
    if scale == 2.0:
        return [nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)]
    if scale == 1.0:
        return []
    # ceil_mode: an odd map keeps its last row/column, so the size is ceil(H / 32) like every other backbone
    return [nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)]


@MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """Stride-16 map -> maps at ``input_stride / scale`` for each scale in ``scale_factors``.

    Args:
        in_channels: channels of the input map (the ViT width).
        scale_factors: any of 4.0, 2.0, 1.0, 0.5 (default: all four -> strides 4/8/16/32).
        input_stride: stride of the input map (16 for patch-16 ViTs); used to crop to ceil(H / stride).
        out_channels: None (rescaling only; level channels C/4, C/2, C, C) or an int (ViTDet's full neck:
            1x1 conv + LN + 3x3 conv + LN per level to ``out_channels``).
        out_indices: levels to build and return (default: all); the others hold no parameters.
    """

    def __init__(self, in_channels: int, scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
                 input_stride: int = 16, out_channels: Optional[int] = None,
                 out_indices: Optional[Sequence[int]] = None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        scale_factors = tuple(float(s) for s in scale_factors)
        bad = [s for s in scale_factors if s not in _LEVEL_CHANNEL_DIVISOR]
        if bad:
            raise ConfigError(f'SimpleFeaturePyramid scale_factors must be among (4.0, 2.0, 1.0, 0.5), got {bad}')
        if in_channels % 4:
            raise ConfigError(f'SimpleFeaturePyramid in_channels={in_channels} must be divisible by 4 (the '
                              'stride-4 level has in_channels // 4 channels)')
        self.out_indices = tuple(range(len(scale_factors))) if out_indices is None else tuple(out_indices)
        self.scale_factors = scale_factors
        self.strides = tuple(int(input_stride / s) for s in scale_factors)
        self.channels = []
        levels = []
        for i, scale in enumerate(scale_factors):
            level_channels = in_channels // _LEVEL_CHANNEL_DIVISOR[scale]
            if i not in self.out_indices:
                levels.append(nn.Identity())  # placeholder: keeps level i at index i, never called
                self.channels.append(0)
                continue
            layers = _rescale(in_channels, scale)
            if out_channels is not None:
                layers += [nn.Conv2d(level_channels, out_channels, kernel_size=1, bias=False),
                           LayerNorm2d(out_channels),
                           nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
                           LayerNorm2d(out_channels)]
                level_channels = out_channels
            levels.append(nn.Sequential(*layers))
            self.channels.append(level_channels)
        self.levels = nn.ModuleList(levels)

    def forward(self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]],
                image_size: Optional[Tuple[int, int]] = None) -> Tuple[torch.Tensor, ...]:
        """``inputs``: an NCHW map, or a backbone's tuple (its last map is used). With ``image_size`` each
        level is cropped (bottom/right, where the backbone padded) to ceil(H / stride) x ceil(W / stride)."""
        x = inputs if torch.is_tensor(inputs) else inputs[-1]
        outs = []
        for i in self.out_indices:
            y = self.levels[i](x)
            if image_size is not None:
                stride = self.strides[i]
                y = y[..., :-(-image_size[0] // stride), :-(-image_size[1] // stride)]
            outs.append(y)
        return tuple(outs)
