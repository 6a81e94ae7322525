"""ConvNeXt (Liu et al., CVPR 2022, arXiv 2201.03545) as a dense-prediction backbone.

The trunk is timm's ``ConvNeXt`` (stem + stages, same parameter names, so timm state dicts load as they are;
facebookresearch/ConvNeXt checkpoints are remapped by :meth:`ConvNeXt.adapt_checkpoint`). vitdense adds
what dense heads need: any input size (bottom/right zero padding before each strided conv, so a map's size
is ceil(H / stride) exactly as for Swin), a LayerNorm on each output, frozen stages, activation
checkpointing, and the published layer-/stage-wise depth assignment for lr decay.
"""
import math
from functools import partial
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
from timm.layers import LayerNorm2d
from timm.models._manipulate import checkpoint_seq
from timm.models.convnext import ConvNeXt as TimmConvNeXt
from timm.models.convnext import checkpoint_filter_fn as convnext_checkpoint_filter

from vitdense.checkpoint.adaptation import CheckpointAdaptation
from vitdense.registry import MODELS
from ..cpu_layers import use_fast_cpu_layers
from ..layers import pad_to_multiple
from .base import DenseBackbone


@MODELS.register_module()
class ConvNeXt(DenseBackbone):
    """ConvNeXt-T/S/B/L/XL pyramid backbone.

    Args:
        arch: 'tiny' | 'small' | 'base' | 'large' | 'xlarge' (or dict(depths=, dims=)).
        drop_path_rate: stochastic depth (published: T 0.4 det/seg, S 0.3 seg, B 0.4 seg).
        layer_scale_init_value: initial layer scale (the checkpoint overrides it).
    """
    arch_hint = 'dict(depths=, dims=)'
    arch_settings = {
        'tiny': dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),
        'small': dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768)),
        'base': dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024)),
        'large': dict(depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536)),
        'xlarge': dict(depths=(3, 3, 27, 3), dims=(256, 512, 1024, 2048)),
    }

    def __init__(self, arch='tiny', in_channels: int = 3, drop_path_rate: float = 0.4,
                 layer_scale_init_value: float = 1e-6, out_indices=(0, 1, 2, 3), frozen_stages: int = -1,
                 with_cp: bool = False, init_cfg=None):
        super().__init__(out_indices, frozen_stages, in_channels, init_cfg)
        arch = self.resolve_arch(arch)
        self.depths, dims = tuple(arch['depths']), tuple(arch['dims'])
        self.num_features = list(dims)
        trunk = TimmConvNeXt(in_chans=in_channels, num_classes=0, depths=self.depths, dims=dims,
                             drop_path_rate=drop_path_rate, ls_init_value=layer_scale_init_value)
        self.stem, self.stages = trunk.stem, trunk.stages
        self.out_norms = self.build_out_norms(partial(LayerNorm2d, eps=1e-6), dims)
        self.with_cp = with_cp
        use_fast_cpu_layers(self)
        self._freeze()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self.check_input(x)
        x = self.stem(pad_to_multiple(x, 4))
        outs = []
        for i, stage in enumerate(self.stages):
            if i > 0:  # downsample = LayerNorm2d, then a 2x2 stride-2 conv: pad between the two
                x = stage.downsample[1](pad_to_multiple(stage.downsample[0](x), 2))
            if self.with_cp and x.requires_grad:
                x = checkpoint_seq(stage.blocks, x)
            else:
                x = stage.blocks(x)
            if i in self.out_indices:
                outs.append(self.out_norms[i](x))
        return tuple(outs)

    def frozen_modules(self) -> List[nn.Module]:
        return self.stem_and_stages(self.stem, self.stages)

    def param_depth(self, param_name: str, mode: str) -> Tuple[int, int]:
        """The ConvNeXt papers' grouping, as their mmdet/mmseg recipes use it.

        layer_wise (detection, decay 0.95): stem 0, stage 0 -> 1, stage 1 -> 2, stage 2 block b -> 3 + b // 3,
        stage 3 -> L = 3 + ceil(depth_2 / 3) (6 for T, 12 for S/B/L), downsample i with stage i, the rest L + 1.
        stage_wise (segmentation, decay 0.9): stem and downsample layers 0, stage i blocks i + 1, the rest 5.
        """
        parts = param_name.split('.')
        if mode == 'stage_wise':
            num = self.num_stages + 2
            if parts[0] == 'stem' or (parts[0] == 'stages' and parts[2] == 'downsample'):
                return 0, num
            if parts[0] == 'stages':
                return int(parts[1]) + 1, num
            return num - 1, num
        last = 3 + math.ceil(self.depths[2] / 3)
        num = last + 2
        if parts[0] == 'stem':
            return 0, num
        if parts[0] == 'stages':
            stage = int(parts[1])
            if stage == 3:
                return last, num
            if stage == 2 and parts[2] == 'blocks':
                return 3 + int(parts[3]) // 3, num
            return stage + 1, num
        return num - 1, num

    # ---- checkpoints ---------------------------------------------------------------------------------------
    def adapt_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> CheckpointAdaptation:
        """timm's names load as they are; facebookresearch/ConvNeXt's are remapped by timm's own
        ``checkpoint_filter_fn``; the classifier (``head.*``, ``norm_pre``) is dropped."""
        adaptation = super().adapt_checkpoint(state_dict)
        if 'downsample_layers.0.0.weight' in adaptation.state_dict:
            adaptation.apply(lambda sd: convnext_checkpoint_filter(sd, self),
                             note='official facebookresearch/ConvNeXt layout remapped')
        adaptation.drop_prefix(('head.', 'norm_pre.'), 'classifier head and its norm')
        return adaptation
