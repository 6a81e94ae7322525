"""Hybrid ViT (Dosovitskiy et al. 2021, sec. 3.1 "Hybrid Architecture"; AugReg, Steiner et al. 2022): a ResNet's
feature map, not image patches, is what the transformer reads. As a dense-prediction backbone.

The trunk is timm's ``vit_*_r*`` hybrids, parameter for parameter (``patch_embed.backbone.*``,
``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.i.*``), so their state dicts load unchanged
(:meth:`HybridVisionTransformer.adapt_checkpoint` drops the classifier and resamples ``pos_embed``):

* the CNN is timm's own ``ResNetV2`` built the way timm's hybrids build it: non-pre-activation bottlenecks,
  weight-standardised convolutions (``StdConv2dSame``, eps 1e-8) with TF 'SAME' padding, GroupNorm(32), a
  7x7 stride-2 stem with a 'SAME' 3x3 max-pool. R50+ViT-B/16 keeps three stages of 3, 4, 9 blocks (the paper
  moves R50's stage-4 blocks into stage 3), so the map is at stride 16; R26 / R50 with four stages give
  stride 32; ``vit_tiny_r_s16_p8`` has the stem only (stride 4) and 8x8 patches on it.
* ``patch_embed.proj`` (1x1, or 8x8 for the stem-only model) projects that map to the ViT width; blocks are
  timm's ``Block`` (SDPA attention) through :class:`~vitdense.models.backbones.vit.ViTBlock`, so ViTDet
  windows (``window_size`` / ``global_attn_indexes``) work as in the plain ViT.
* timm's ``HybridEmbed`` itself does not fit: it probes its CNN with a dummy forward at build time (no
  meta-device builds) and returns only the last map, while the pyramid needs the stage outputs. Its two
  parts (``backbone``, ``proj``) and names are kept in :class:`HybridPatchEmbed`.

Pyramid (strides 4 / 8 / 16 / 32, channels in ``num_features``). A level comes from the ResNet when the ResNet
has a map at that stride below the token stride, otherwise from the token map:

* R50+ViT-B/16: stage 1 (stride 4, 256 ch) and stage 2 (stride 8, 512 ch) of the ResNet, the token map
  (stride 16, 768 ch) and its 2x2 max-pool (stride 32, ViTDet's rule). The ResNet maps are real
  high-resolution features, computed anyway and free; rebuilding strides 4 / 8 from the stride-16 tokens with
  ViTDet's deconvolutions would add parameters and lose the detail the convolutions kept (DPT-Hybrid takes
  the same two ResNet stages for the same reason).
* R26 / R50 with four stages (tokens at stride 32): ResNet stages 1-3 for 4 / 8 / 16, the tokens for 32.
* stem-only R+ViT-Ti (tokens at stride 32): the stem (stride 4), ViTDet deconvolutions x4 / x2 of the tokens
  for 8 / 16, the tokens for 32 (:class:`~vitdense.models.necks.SimpleFeaturePyramid` does all token levels).

Every level then goes through its own LayerNorm (``out_norms``).

Any input H x W >= 32: 'SAME' padding makes every strided conv / pool return ceil(size / 2) (checked for odd
sizes: 97 x 131 -> 49x66, 25x33, 13x17), so ResNet maps and tokens are exactly ceil(H / stride) with no
input padding; the 8x8 patches of the stem-only model zero-pad the stride-4 map at the bottom/right first
(timm's ``dynamic_img_pad``) and deconvolved levels are cropped to ceil(H / stride). The absolute position
embedding is stored for the ``img_size`` grid (a checkpoint for another grid, e.g. the 24 x 24 of the 384
model, is resampled once at load time) and bicubically resampled to the current grid in every forward, as
timm does with ``dynamic_img_size=True`` (same function, same numbers).

Stages (freezing, stage-wise lr decay): stage 0 is the ResNet stem; stage k (1..4) holds what pyramid level
k - 1 needs that earlier stages do not, plus its output norm. For R50+ViT-B/16: stage 1 = ResNet stage 1,
stage 2 = ResNet stage 2, stage 3 = ResNet stage 3 + projection + class/position embeddings + all blocks,
stage 4 = the stride-32 norm; ``frozen_stages=1`` freezes the stem and the first ResNet stage, like mmdet's
ResNet. Layer-wise depth: stem 0, ResNet stage j j + 1, the projection / class token / position embedding
n + 1 (n ResNet stages), block i n + 2 + i, everything after the blocks last (``num_depths = n + depth + 3``):
the ResNet is 16 blocks deep in R50, so it gets depths of its own instead of sharing the patch embedding's.

The ResNet has no stochastic depth (timm's hybrids give it none); ``drop_path_rate`` is linear over the
transformer blocks. ``with_cp`` checkpoints ResNet stages and transformer blocks.
"""
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from timm.layers import LayerNorm2d, StdConv2d, StdConv2dSame, to_2tuple
from timm.models.resnetv2 import ResNetV2, create_resnetv2_stem

from vitdense.checkpoint.adaptation import CheckpointAdaptation
from vitdense.errors import CheckpointError, ConfigError
from vitdense.registry import MODELS
from ..cpu_layers import use_fast_cpu_layers
from ..layers import init_transformer_weights, pad_to_multiple
from ..necks.simple_pyramid import SimpleFeaturePyramid
from .base import DenseBackbone
from .vit import CLASSIFIER_ONLY, PlainBackbone, TokenEncoder, ViTBlock, adapt_pos_embed, drop_classifier, encoder_blocks

RESNET_WIDTHS = (256, 512, 1024, 2048)


def hybrid_resnet(in_channels: int, layers: Sequence[int], channels: Sequence[int], stem_channels: int,
                  padding_same: bool) -> nn.Module:
    """timm's hybrid-ViT CNN: a ResNetV2 (no pre-activation, StdConv, GroupNorm) or, for ``layers=()``, its
    stem alone."""
    conv_layer = partial(StdConv2dSame if padding_same else StdConv2d, eps=1e-8)
    stem_type = 'same' if padding_same else ''
    if not layers:
        return create_resnetv2_stem(in_channels, stem_channels, stem_type=stem_type, preact=False,
                                    conv_layer=conv_layer)
    return ResNetV2(layers=tuple(layers), channels=tuple(channels), stem_chs=stem_channels, num_classes=0,
                    global_pool='', in_chans=in_channels, preact=False, stem_type=stem_type,
                    conv_layer=conv_layer)


class HybridPatchEmbed(nn.Module):
    """ResNet (``backbone``) + projection (``proj``) with timm ``HybridEmbed``'s names; returns the ResNet's
    maps (the stem's for a stem-only CNN, else each stage's) and the NHWC tokens."""

    def __init__(self, backbone: nn.Module, feature_channels: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.backbone = backbone
        self.stem_only = not hasattr(backbone, 'stages')
        self.patch_size = patch_size
        self.proj = nn.Conv2d(feature_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.with_cp = False

    def cnn_parts(self) -> List[nn.Module]:
        return [self.backbone] if self.stem_only else [self.backbone.stem, *self.backbone.stages]

    def forward(self, x: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor]:
        maps = []
        for i, part in enumerate(self.cnn_parts()):
            if self.with_cp and torch.is_grad_enabled():
                x = cp.checkpoint(part, x, use_reentrant=False)
            else:
                x = part(x)
            if self.stem_only or i > 0:
                maps.append(x)
        # bottom/right zero padding to whole patches (timm's dynamic_img_pad)
        return maps, self.proj(pad_to_multiple(x, self.patch_size)).permute(0, 2, 3, 1)


@MODELS.register_module()
class HybridVisionTransformer(TokenEncoder, DenseBackbone):
    """ResNet + ViT hybrid (timm ``vit_*_r*``) with a 4-level pyramid.

    Args:
        arch: a timm hybrid's name without the resolution: 'vit_base_r50_s16' (R50+ViT-B/16, the paper's),
            'vit_small_r26_s32', 'vit_base_r26_s32', 'vit_large_r50_s32', 'vit_tiny_r_s16_p8'; or
            dict(layers=, embed_dim=, depth=, num_heads=, [patch_size=1, channels=, stem_channels=64]).
        img_size: the grid the position embedding is stored for, e.g. 384 for the 384 checkpoint used as it
            is, 512 for 512 x 512 crops (the checkpoint's table is resampled at load).
        padding_same: TF 'SAME' padding in the ResNet, as every timm hybrid checkpoint was trained with.
        with_cls_token / window_size / global_attn_indexes: as in
            :class:`~vitdense.models.backbones.VisionTransformer` (windows need ``with_cls_token=False``).
        drop_path_rate: stochastic depth over the transformer blocks, linear.
        out_indices / frozen_stages / with_cp / init_cfg: see :class:`DenseBackbone`.
    """
    arch_settings = {
        'vit_tiny_r_s16_p8': dict(layers=(), patch_size=8, embed_dim=192, depth=12, num_heads=3),
        'vit_small_r26_s32': dict(layers=(2, 2, 2, 2), embed_dim=384, depth=12, num_heads=6),
        'vit_base_r26_s32': dict(layers=(2, 2, 2, 2), embed_dim=768, depth=12, num_heads=12),
        'vit_base_r50_s16': dict(layers=(3, 4, 9), embed_dim=768, depth=12, num_heads=12),
        'vit_large_r50_s32': dict(layers=(3, 4, 6, 3), embed_dim=1024, depth=24, num_heads=16),
    }
    arch_hint = PlainBackbone.arch_hint

    def __init__(self, arch='vit_base_r50_s16', img_size=224, in_channels: int = 3, padding_same: bool = True,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, with_cls_token: bool = True,
                 window_size: int = 0, global_attn_indexes: Sequence[int] = (), drop_path_rate: float = 0.1,
                 out_indices=(0, 1, 2, 3), frozen_stages: int = -1, with_cp: bool = False, init_cfg=None):
        super().__init__(out_indices, frozen_stages, in_channels, init_cfg)
        settings = self.resolve_arch(arch)
        layers = tuple(settings['layers'])
        channels = tuple(settings.get('channels', RESNET_WIDTHS[:len(layers)]))
        stem_channels = settings.get('stem_channels', 64)
        patch_size = settings.get('patch_size', 1)
        embed_dim, depth, num_heads = settings['embed_dim'], settings['depth'], settings['num_heads']
        if len(channels) != len(layers) or len(layers) > 4:
            raise ConfigError(f'HybridVisionTransformer arch: layers {layers} and channels {channels} must be '
                              'equally long, with at most 4 ResNet stages')
        # ResNet maps: the stem's (stride 4) for a stem-only CNN, else stage j's (stride 4 * 2 ** j)
        self.cnn_strides = (4,) if not layers else tuple(4 * 2 ** j for j in range(len(layers)))
        cnn_channels = (stem_channels,) if not layers else channels
        self.token_stride = self.cnn_strides[-1] * patch_size
        if self.token_stride not in (16, 32):
            raise ConfigError(f'HybridVisionTransformer arch gives tokens at stride {self.token_stride} (ResNet '
                              f'stride {self.cnn_strides[-1]} x patch {patch_size}); the pyramid needs 16 or 32')
        self.global_attn_indexes = PlainBackbone.check_windows(depth, window_size, global_attn_indexes,
                                                               with_cls_token)
        self.window_size = window_size
        self.embed_dim = embed_dim
        self.depth = depth
        self.with_cp = with_cp

        cnn = hybrid_resnet(in_channels, layers, channels, stem_channels, padding_same)
        self.patch_embed = HybridPatchEmbed(cnn, cnn_channels[-1], embed_dim, patch_size)
        self.patch_embed.with_cp = with_cp
        self.num_cnn_stages = len(layers)
        self.blocks = encoder_blocks(
            partial(ViTBlock, embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias),
            depth, drop_path_rate, window_size=window_size, global_attn_indexes=self.global_attn_indexes)
        # timm's grid: the ResNet map at img_size ('SAME': ceil), then whole patches
        img_size = to_2tuple(img_size)
        self._init_tokens(embed_dim, tuple(-(-s // self.cnn_strides[-1]) // patch_size for s in img_size),
                          with_cls_token)

        # level i: ('cnn', j) = ResNet map j, or ('tokens', k) = k-th level of the token pyramid
        self.level_sources, token_scales, token_out = [], [], []
        for i, stride in enumerate(self.strides):
            if stride < self.token_stride and stride in self.cnn_strides:
                self.level_sources.append(('cnn', self.cnn_strides.index(stride)))
                continue
            if i in self.out_indices:
                token_out.append(len(token_scales))
            self.level_sources.append(('tokens', len(token_scales)))
            token_scales.append(self.token_stride / stride)
        self.pyramid = SimpleFeaturePyramid(embed_dim, scale_factors=token_scales, input_stride=self.token_stride,
                                            out_indices=token_out)
        token_channels = [int(embed_dim // max(s, 1.0)) for s in token_scales]  # ViTDet: C/4, C/2, C, C
        self.num_features = [cnn_channels[k] if kind == 'cnn' else token_channels[k]
                             for kind, k in self.level_sources]
        self.out_norms = self.build_out_norms(LayerNorm2d, self.num_features)
        self.stage_units = self._stage_units()
        self.blocks.apply(init_transformer_weights)
        use_fast_cpu_layers(self)
        self._freeze()

    def _stage_units(self) -> Dict[str, int]:
        """Parameter-name prefix -> stage (0 the stem; k the first pyramid level k - 1 that needs it)."""
        token_levels = [i for i, (kind, _) in enumerate(self.level_sources) if kind == 'tokens']
        token_stage = token_levels[0] + 1
        units = {'patch_embed.backbone' if self.patch_embed.stem_only else 'patch_embed.backbone.stem': 0}
        for j in range(self.num_cnn_stages):
            needers = [i for i, (kind, k) in enumerate(self.level_sources) if kind == 'cnn' and k >= j]
            units[f'patch_embed.backbone.stages.{j}'] = min(needers + token_levels) + 1
        for name in ('patch_embed.proj', 'cls_token', 'pos_embed', 'blocks'):
            units[name] = token_stage
        for i, (kind, k) in enumerate(self.level_sources):
            if kind == 'tokens':
                units[f'pyramid.levels.{k}'] = i + 1
            units[f'out_norms.{i}'] = i + 1
        return units

    # ---- forward --------------------------------------------------------------------------------------
    def embed(self, x: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor, Tuple[int, int]]:
        """Image -> ResNet maps, (B, prefix + H*W, C) tokens with position embedding, the token grid (H, W)."""
        maps, x = self.patch_embed(x)
        tokens, hw = self.tokens_from_grid(x)
        return maps, tokens, hw

    def forward_tokens(self, x: torch.Tensor):
        """ResNet maps, tokens after the last block (before any norm) and the grid (H, W)."""
        maps, x, hw = self.embed(x)
        return maps, self.run_blocks(x, hw), hw

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self.check_input(x)
        image_size = tuple(x.shape[-2:])
        maps, tokens, (H, W) = self.forward_tokens(x)
        grid = tokens[:, self.num_prefix_tokens:].transpose(1, 2).reshape(x.shape[0], -1, H, W)
        token_maps = dict(zip(self.pyramid.out_indices, self.pyramid(grid, image_size=image_size)))
        outs = []
        for i in self.out_indices:
            kind, k = self.level_sources[i]
            outs.append(self.out_norms[i](maps[k] if kind == 'cnn' else token_maps[k]))
        return tuple(outs)

    # ---- freezing -------------------------------------------------------------------------------------
    def frozen_modules(self) -> List[nn.Module]:
        return [self.get_submodule(name) for name, stage in self.stage_units.items()
                if stage <= self.frozen_stages and name not in ('cls_token', 'pos_embed')]

    def _freeze(self) -> None:
        super()._freeze()
        if self.frozen_stages >= self.stage_units['pos_embed']:
            self.freeze_token_embeddings()

    # ---- lr decay -------------------------------------------------------------------------------------
    def _unit_of(self, param_name: str) -> Optional[str]:
        matches = [u for u in self.stage_units if param_name == u or param_name.startswith(u + '.')]
        return max(matches, key=len) if matches else None

    def param_depth(self, param_name: str, mode: str) -> Tuple[int, int]:
        """layer_wise: stem 0, ResNet stage j j + 1, projection / class token / position embedding n + 1,
        block i n + 2 + i, the rest (pyramid, output norms) last; stage_wise: the freezing stages 0..4, the
        pyramid and output norms 5 (as for Swin / ConvNeXt / ViT)."""
        unit = self._unit_of(param_name)
        if mode == 'stage_wise':
            num = self.num_stages + 2
            if unit is None or unit.startswith(('pyramid.', 'out_norms.')):
                return num - 1, num
            return self.stage_units[unit], num
        n = self.num_cnn_stages
        num = n + self.depth + 3
        parts = param_name.split('.')
        if unit in ('patch_embed.backbone', 'patch_embed.backbone.stem'):
            return 0, num
        if unit is not None and unit.startswith('patch_embed.backbone.stages.'):
            return int(parts[3]) + 1, num
        if unit in ('patch_embed.proj', 'cls_token', 'pos_embed'):
            return n + 1, num
        if unit == 'blocks':
            return n + 2 + int(parts[1]), num
        return num - 1, num

    # ---- checkpoints ---------------------------------------------------------------------------------------
    def adapt_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> CheckpointAdaptation:
        """timm's ``vit_*_r*`` state dicts (``vit_base_r50_s16_384.orig_in21k_ft_in1k``, the AugReg R26+ViT-S, ...)
        already use this backbone's names: the classifier (``head``, the final ``norm`` / ``fc_norm``,
        ``pre_logits``) is dropped and ``pos_embed`` fitted: bicubic resampling (timm's
        ``resample_abs_pos_embed``, as timm's own loader does) from the checkpoint's grid (24 x 24 for the 384
        model) to the ``img_size`` grid, keeping the class-token position, or dropping it with the token for
        windowed backbones. Google's ``.npz`` releases are not PyTorch files: let timm read them
        (``timm.create_model(name, pretrained=True)``) and ``torch.save`` its ``state_dict()``."""
        adaptation = super().adapt_checkpoint(state_dict)
        keys = adaptation.state_dict
        if not any(k.startswith('patch_embed.backbone.') for k in keys):
            if 'patch_embed.proj.weight' in keys:
                raise CheckpointError('this is a plain ViT checkpoint (patch_embed.proj on pixels, no '
                                      'patch_embed.backbone.* ResNet); load it into vitdense.VisionTransformer')
            raise CheckpointError('no patch_embed.backbone.* (ResNet) weights: not a hybrid ViT checkpoint '
                                  '(timm vit_*_r* / vitdense HybridVisionTransformer)')
        drop_classifier(adaptation, CLASSIFIER_ONLY)
        adapt_pos_embed(adaptation, self)
        return adaptation
