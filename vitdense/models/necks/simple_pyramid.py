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

Token strides that are not 16 (patch 14 DINOv2 / EVA-02, patch 8 or 32 ViTs): with ``out_strides`` the
scale factors come from the real stride, ``input_stride / out_stride`` (3.5 / 1.75 / 0.875 / 0.4375 for
patch 14). Each level applies ViTDet's operation for the nearest power of two (deconvolutions x4 / x2,
identity, max-pool; x8 and /4 for patch 32 / 8) and, where that power is not the exact factor, bilinearly
resamples the result to the target stride with cell centres aligned
(:func:`vitdense.models.layers.resample_to_stride`), so patch 14 still gives strides 4 / 8 / 16 / 32.
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from timm.layers import LayerNorm2d

from vitdense.errors import ConfigError
from vitdense.registry import MODELS
from ..layers import resample_to_stride

_LEVEL_CHANNEL_DIVISOR = {4.0: 4, 2.0: 2, 1.0: 1, 0.5: 1}
_POWERS = range(-2, 4)  # ViTDet's /2 .. x4, plus /4 and x8 for patch-8 and patch-32 token maps


def _rescale(in_channels: int, scale: float) -> List[nn.Module]:
    """ViTDet's operation for a power-of-two ``scale``: 2x2 deconvolutions halving the channels (LayerNorm +
    GELU between two), identity, or a max-pool."""
    power = round(math.log2(scale))
    if power > 0:
        layers, channels = [], in_channels
        for i in range(power):
            if i:
                layers += [LayerNorm2d(channels), nn.GELU()]
            layers.append(nn.ConvTranspose2d(channels, channels // 2, kernel_size=2, stride=2))
            channels //= 2
        return layers
    if power == 0:
        return []
    # ceil_mode: an odd map keeps its last row/column, so the size is ceil(H / 32) like every other backbone
    return [nn.MaxPool2d(kernel_size=2 ** -power, stride=2 ** -power, ceil_mode=True)]


@MODELS.register_module()
class SimpleFeaturePyramid(BaseModule):
    """Stride-16 map -> maps at ``input_stride / scale`` for each scale in ``scale_factors``.

    Args:
        in_channels: channels of the input map (the ViT width).
        scale_factors: any of 4.0, 2.0, 1.0, 0.5 (default: all four -> strides 4/8/16/32).
        input_stride: stride of the input map (16 for patch-16 ViTs); used to crop to ceil(H / stride).
        out_strides: instead of ``scale_factors``, the strides to emit (e.g. (4, 8, 16, 32) from a stride-14
            map): factors ``input_stride / out_stride``, each level ViTDet's operation for the nearest power
            of two plus an exact bilinear resampling where the factor is not a power of two.
        out_channels: None (rescaling only; level channels C/4, C/2, C, C) or an int (ViTDet's full neck:
            1x1 conv + LN + 3x3 conv + LN per level to ``out_channels``).
        out_indices: levels to build and return (default: all); the others hold no parameters.
    """

    def __init__(self, in_channels: int, scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
                 input_stride: int = 16, out_channels: Optional[int] = None,
                 out_indices: Optional[Sequence[int]] = None, out_strides: Optional[Sequence[int]] = None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if out_strides is not None:
            self.strides = tuple(int(s) for s in out_strides)
            scale_factors = tuple(input_stride / s for s in self.strides)
            powers = [round(math.log2(s)) for s in scale_factors]
            bad = [s for s, p in zip(self.strides, powers) if p not in _POWERS]
            if bad:
                raise ConfigError(f'SimpleFeaturePyramid out_strides {bad} are more than x8 / 4 away from the '
                                  f'input stride {input_stride}')
        else:
            scale_factors = tuple(float(s) for s in scale_factors)
            bad = [s for s in scale_factors if s not in _LEVEL_CHANNEL_DIVISOR]
            if bad:
                raise ConfigError(f'SimpleFeaturePyramid scale_factors must be among (4.0, 2.0, 1.0, 0.5), got {bad}')
            self.strides = tuple(int(input_stride / s) for s in scale_factors)
            powers = [round(math.log2(s)) for s in scale_factors]
        divisor = 2 ** max(max(powers), 2)
        if in_channels % divisor:
            raise ConfigError(f'SimpleFeaturePyramid in_channels={in_channels} must be divisible by {divisor} (the '
                              f'finest level has in_channels // {divisor} channels)')
        self.out_indices = tuple(range(len(scale_factors))) if out_indices is None else tuple(out_indices)
        self.scale_factors = scale_factors
        self.input_stride = input_stride
        # the stride each level's power-of-two operation reaches; a level whose stride differs is resampled
        self.op_strides = tuple(input_stride / 2 ** p for p in powers)
        self.channels = []
        levels = []
        for i, power in enumerate(powers):
            level_channels = in_channels // 2 ** max(power, 0)
            if i not in self.out_indices:
                levels.append(nn.Identity())  # placeholder: keeps level i at index i, never called
                self.channels.append(0)
                continue
            layers = _rescale(in_channels, 2.0 ** power)
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
            stride = self.strides[i]
            if self.op_strides[i] != stride:  # a factor that is not a power of two (patch 14)
                extent = image_size if image_size is not None else [n * self.input_stride for n in x.shape[-2:]]
                size = (-(-extent[0] // stride), -(-extent[1] // stride))
                y = resample_to_stride(y, self.op_strides[i], stride, size)
            elif image_size is not None:
                y = y[..., :-(-image_size[0] // stride), :-(-image_size[1] // stride)]
            outs.append(y)
        return tuple(outs)
