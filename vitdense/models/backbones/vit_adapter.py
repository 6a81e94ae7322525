"""ViT-Adapter (Chen et al., ICLR 2023, "Vision Transformer Adapter for Dense Predictions", arXiv 2205.08534)
on any timm plain ViT.

A plain ViT keeps one token map at its patch stride and no image prior. ViT-Adapter runs three things next to
it, and leaves the ViT's own blocks untouched (so any pretrained ViT loads as it is):

* the **spatial prior module** (SPM): a ResNet-like convolutional stem (three 3x3 convs + max-pool, stride 4)
  and three stride-2 3x3 convs, each level projected to the ViT width by a 1x1 conv: c1..c4 at strides
  4 / 8 / 16 / 32. c2..c4 (plus a learned level embedding each) are flattened into one sequence of spatial
  features ``c``.
* **interaction blocks**, one per group of ViT blocks (``interaction_indexes``; the paper splits the 12 blocks
  of ViT-S / B into 4 groups of 3): an **injector** lets the ViT's patch tokens (queries) attend to ``c``
  (keys, 3 levels) with multi-scale deformable attention and adds the result scaled by a learnable ``gamma``
  (zero at init, so the pretrained ViT computes its own features at the start of fine-tuning); then the group's
  ViT blocks run; then an **extractor** lets ``c`` (queries) attend to the ViT's patch tokens (keys, 1 level)
  and adds a convolutional FFN (a depth-wise 3x3 conv between two linears, run per level). The last
  interaction has two extra extractors.
* the **pyramid**: c2..c4 back to maps at strides 8 / 16 / 32, the stride-4 level from a 2x2 transposed conv of
  the stride-8 map added to the SPM's c1; the ViT's last patch map, bilinearly resampled to each level, is
  added to every level; one BatchNorm per level (the paper's SyncBN; ``tools/train.py --sync-bn``).

Deformable attention is mmcv's ``MultiScaleDeformableAttention`` (Deformable DETR's, with ``value_proj_ratio``
for the paper's deform ratio); on CPU it runs mmcv's pure-PyTorch path (bilinear ``grid_sample``).

Sizes. Every level is computed at its ceil size, ceil(H / s) x ceil(W / s), for any H x W: the SPM's
stride-2 convs and max-pool (padding 1) give ceil sizes by themselves, the ViT pads the image to whole patches,
the transposed conv's output is cropped to c1's size, and the ViT map is resampled to each level by the exact
stride ratio, cell centres aligned (:func:`~vitdense.models.layers.resample_to_stride`; for patch 16 and H, W
multiples of 32 these are the paper's x4 / x2 / x1 / x0.5 bilinear resamplings exactly). The
deformable attentions work on normalised coordinates (reference points at the token centres of each grid), so
the ViT grid does not have to be the stride-16 grid: a patch-14 ViT (DINOv2) runs at its own patch size
(vitdense's choice; the ViT-Adapter repo converts DINOv2's patch embedding to 16 before fine-tuning).

``torch.compile`` takes the model with one graph break per deformable attention: mmcv's CPU path splits its
values by sizes read from its ``spatial_shapes`` tensor, which dynamo cannot trace as one graph.
"""
import math
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.ops import MultiScaleDeformableAttention
from timm.layers import DropPath, trunc_normal_

from vitdense.checkpoint.adaptation import CheckpointAdaptation
from vitdense.errors import ConfigError
from vitdense.registry import MODELS
from ..cpu_layers import use_fast_cpu_layers
from ..layers import resample_to_stride
from .timm_vit import TimmViT, TokenMap

LevelShapes = Sequence[Tuple[int, int]]


# ---- deformable attention inputs ----------------------------------------------------------------------------
def reference_points(shapes: LevelShapes, device=None) -> torch.Tensor:
    """(1, sum(h * w), 1, 2): the centre of every token of each h x w grid, as normalised (x, y) in [0, 1], the
    grids in order (Deformable DETR's encoder reference points)."""
    points = []
    for h, w in shapes:
        y, x = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, device=device) / h,
                              torch.linspace(0.5, w - 0.5, w, device=device) / w, indexing='ij')
        points.append(torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1))
    return torch.cat(points)[None, :, None]


def spatial_layout(shapes: LevelShapes, device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``spatial_shapes`` (levels, 2) and ``level_start_index`` (levels,) of keys made of grids ``shapes``."""
    spatial_shapes = torch.as_tensor(list(shapes), dtype=torch.long, device=device)
    sizes = spatial_shapes.prod(1)
    return spatial_shapes, torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])


class DeformableCrossAttention(nn.Module):
    """Normed queries attend to normed multi-level features through multi-scale deformable attention; the forward
    returns the attention output alone (the caller adds it to its residual stream)."""

    def __init__(self, dim: int, num_heads: int, num_levels: int, num_points: int, deform_ratio: float,
                 norm_layer):
        super().__init__()
        self.query_norm = norm_layer(dim)
        self.feat_norm = norm_layer(dim)
        # no dropout: the paper's MSDeformAttn has none (mmcv's default is 0.1)
        self.attn = MultiScaleDeformableAttention(embed_dims=dim, num_heads=num_heads, num_levels=num_levels,
                                                  num_points=num_points, dropout=0.0, batch_first=True,
                                                  value_proj_ratio=deform_ratio)

    def forward(self, query, feat, query_points, feat_shapes: LevelShapes) -> torch.Tensor:
        spatial_shapes, level_start_index = spatial_layout(feat_shapes, query.device)
        return self.attn(self.query_norm(query), value=self.feat_norm(feat), identity=query.new_zeros(()),
                         reference_points=query_points, spatial_shapes=spatial_shapes,
                         level_start_index=level_start_index)


# ---- the adapter's blocks -----------------------------------------------------------------------------------
class MultiLevelDWConv(nn.Module):
    """One depth-wise 3x3 conv applied to each level of a multi-level token sequence (levels of ``shapes``, in
    order), the levels kept apart."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor, shapes: LevelShapes) -> torch.Tensor:
        B, _, C = x.shape
        levels = x.split([h * w for h, w in shapes], dim=1)
        out = [self.dwconv(t.transpose(1, 2).reshape(B, C, h, w)).flatten(2).transpose(1, 2)
               for t, (h, w) in zip(levels, shapes)]
        return torch.cat(out, dim=1)


class ConvFFN(nn.Module):
    """The extractor's FFN: linear -> depth-wise 3x3 conv (per level) -> GELU -> linear."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = MultiLevelDWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, shapes: LevelShapes) -> torch.Tensor:
        x = self.drop(self.act(self.dwconv(self.fc1(x), shapes)))
        return self.drop(self.fc2(x))


class Injector(nn.Module):
    """Spatial features -> ViT tokens: ``x + gamma * attn(norm(x), norm(c))``, ``gamma`` a per-channel scale
    starting at ``init_values`` (0 in the paper: the injector starts as the identity)."""

    def __init__(self, dim: int, num_heads: int, num_points: int, deform_ratio: float, norm_layer,
                 init_values: float = 0.0, num_levels: int = 3, with_cp: bool = False):
        super().__init__()
        self.cross_attn = DeformableCrossAttention(dim, num_heads, num_levels, num_points, deform_ratio, norm_layer)
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))
        self.with_cp = with_cp

    def _forward(self, x, c, x_points, c_shapes):
        return x + self.gamma * self.cross_attn(x, c, x_points, c_shapes)

    def forward(self, x: torch.Tensor, c: torch.Tensor, x_points: torch.Tensor, c_shapes: LevelShapes):
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, c, x_points, c_shapes, use_reentrant=False)
        return self._forward(x, c, x_points, c_shapes)


class Extractor(nn.Module):
    """ViT tokens -> spatial features: ``c + attn(norm(c), norm(x))``, then ``+ drop_path(ConvFFN(norm(c)))``."""

    def __init__(self, dim: int, num_heads: int, num_points: int, deform_ratio: float, norm_layer,
                 with_cffn: bool = True, cffn_ratio: float = 0.25, drop: float = 0.0, drop_path: float = 0.0,
                 with_cp: bool = False):
        super().__init__()
        self.cross_attn = DeformableCrossAttention(dim, num_heads, 1, num_points, deform_ratio, norm_layer)
        self.with_cffn = with_cffn
        if with_cffn:
            self.ffn_norm = norm_layer(dim)
            self.ffn = ConvFFN(dim, int(dim * cffn_ratio), drop)
            self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.with_cp = with_cp

    def _forward(self, c, x, c_points, c_shapes, x_shape):
        c = c + self.cross_attn(c, x, c_points, [x_shape])
        if self.with_cffn:
            c = c + self.drop_path(self.ffn(self.ffn_norm(c), c_shapes))
        return c

    def forward(self, c: torch.Tensor, x: torch.Tensor, c_points: torch.Tensor, c_shapes: LevelShapes,
                x_shape: Tuple[int, int]) -> torch.Tensor:
        if self.with_cp and c.requires_grad:
            return cp.checkpoint(self._forward, c, x, c_points, c_shapes, x_shape, use_reentrant=False)
        return self._forward(c, x, c_points, c_shapes, x_shape)


class InteractionBlock(nn.Module):
    """The adapter's part of one interaction: an injector before a group of ViT blocks, an extractor (and, in
    the last interaction, two more) after it. The ViT blocks themselves run in between, outside this module."""

    def __init__(self, dim: int, num_heads: int, num_points: int = 4, deform_ratio: float = 1.0,
                 norm_layer=partial(nn.LayerNorm, eps=1e-6), init_values: float = 0.0, with_cffn: bool = True,
                 cffn_ratio: float = 0.25, drop: float = 0.0, drop_path: float = 0.0,
                 extra_extractors: int = 0, with_cp: bool = False):
        super().__init__()
        self.injector = Injector(dim, num_heads, num_points, deform_ratio, norm_layer, init_values,
                                 with_cp=with_cp)
        extractor = partial(Extractor, dim, num_heads, num_points, deform_ratio, norm_layer, with_cffn,
                            cffn_ratio, drop, drop_path, with_cp)
        self.extractor = extractor()
        self.extra_extractors = nn.ModuleList([extractor() for _ in range(extra_extractors)])

    def inject(self, x, c, x_points, c_shapes):
        return self.injector(x, c, x_points, c_shapes)

    def extract(self, c, x, c_points, c_shapes, x_shape):
        for extractor in (self.extractor, *self.extra_extractors):
            c = extractor(c, x, c_points, c_shapes, x_shape)
        return c


def conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> List[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True)]


class SpatialPriorModule(nn.Module):
    """The SPM: image -> c1, c2, c3, c4 (NCHW, ``embed_dim`` channels) at strides 4 / 8 / 16 / 32, sizes
    ceil(H / s) x ceil(W / s). A ResNet-C stem (3x3 convs 2 / 1 / 1 + max-pool, ``inplanes`` channels), then
    3x3 stride-2 convs to 2 / 4 / 4 x ``inplanes`` channels, each level projected by a 1x1 conv."""

    def __init__(self, in_channels: int = 3, inplanes: int = 64, embed_dim: int = 384):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn_relu(in_channels, inplanes, 2), *conv_bn_relu(inplanes, inplanes, 1),
                                  *conv_bn_relu(inplanes, inplanes, 1), nn.MaxPool2d(3, 2, 1))
        self.conv2 = nn.Sequential(*conv_bn_relu(inplanes, 2 * inplanes, 2))
        self.conv3 = nn.Sequential(*conv_bn_relu(2 * inplanes, 4 * inplanes, 2))
        self.conv4 = nn.Sequential(*conv_bn_relu(4 * inplanes, 4 * inplanes, 2))
        self.fc1 = nn.Conv2d(inplanes, embed_dim, 1)
        self.fc2 = nn.Conv2d(2 * inplanes, embed_dim, 1)
        self.fc3 = nn.Conv2d(4 * inplanes, embed_dim, 1)
        self.fc4 = nn.Conv2d(4 * inplanes, embed_dim, 1)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        c1 = self.stem(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        return self.fc1(c1), self.fc2(c2), self.fc3(c3), self.fc4(c4)


def init_adapter_weights(m: nn.Module) -> None:
    """The paper's initialisation of the adapter (``module.apply``, before the deformable attentions reset
    theirs): linears truncated normal (std 0.02) with zero bias, norms one / zero, convs and transposed convs
    normal with std sqrt(2 / fan_out) (He, fan-out) and zero bias."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, MultiScaleDeformableAttention):
        pass  # reset after the apply, see reset_deformable_attention


def reset_deformable_attention(module: nn.Module) -> None:
    """Deformable DETR's init for every deformable attention under ``module``: zero offset weights with biases
    pointing each head at its own direction, uniform attention weights, xavier value / output projections."""
    for m in module.modules():
        if isinstance(m, MultiScaleDeformableAttention):
            m.init_weights()


def feature_map(tokens: torch.Tensor, shape: Tuple[int, int]) -> torch.Tensor:
    """(B, h * w, C) tokens -> (B, C, h, w)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, *shape)


# ---- the backbone -------------------------------------------------------------------------------------------
ADAPTER_PARTS = ('spm', 'level_embed', 'interactions', 'up', 'out_norms')  # first name components, not timm's


def even_interaction_indexes(num_blocks: int, num_interactions: int = 4) -> List[Tuple[int, int]]:
    """``num_interactions`` contiguous groups of blocks as inclusive ``(first, last)`` pairs, as equal as they can
    be: [(0, 2), (3, 5), (6, 8), (9, 11)] for 12 blocks (the paper's ViT-T / S / B indexes)."""
    bounds = [round(i * num_blocks / num_interactions) for i in range(num_interactions + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(num_interactions)]


@MODELS.register_module()
class ViTAdapter(TimmViT):
    """ViT-Adapter on a timm plain ViT (:class:`~vitdense.models.backbones.TimmViT`: timm's own patch embedding,
    position embedding / RoPE for the input grid, prefix tokens, blocks and windows), see the module docstring.

    The ViT's parameters keep :class:`TimmViT`'s names (``vit.*``: timm's under ``vit.``), so timm checkpoints
    load into the ViT through ``init_cfg`` exactly as into TimmViT; the adapter's parts (``spm``, ``level_embed``,
    ``interactions``, ``up``, ``out_norms``) have no ImageNet weights and stay at their initialisation (the load
    report lists them as missing).

    Args:
        model_name / img_size / window_size / global_attn_indexes / model_kwargs: the ViT, as for
            :class:`TimmViT` (e.g. 'deit_small_patch16_224' with windows of 14 and global blocks 2, 5, 8, 11, the
            paper's detection setting; ``model_kwargs=dict(class_token=False)`` runs without the class token as
            the paper does, and a checkpoint's class token and its position are then dropped at load).
        interaction_indexes: inclusive ``[first, last]`` ViT blocks of each interaction, contiguous and covering
            every block; default 4 equal groups ([[0, 2], [3, 5], [6, 8], [9, 11]] for 12 blocks).
        conv_inplane: the SPM's stem width (64).
        deform_num_heads / n_points / deform_ratio: the deformable attentions' heads (6 for S, 12 for B),
            sampling points per head and level (4), value-projection ratio (1.0 for S, 0.5 for B).
        init_values: the injectors' initial ``gamma`` (0: each injector starts as the identity).
        with_cffn / cffn_ratio: the extractors' convolutional FFN and its hidden ratio (0.25).
        add_vit_feature: add the ViT's last patch map (resampled) to every level (the paper: True).
        use_extra_extractor: two more extractors in the last interaction (the paper: True).
        drop_path_rate: stochastic depth of the ViT blocks (linear, timm's rule) and of every extractor's FFN (the
            full rate, as the paper's code has it).
        out_indices / with_cp / in_channels / init_cfg: see
            :class:`~vitdense.models.backbones.base.DenseBackbone`; ``with_cp`` checkpoints the ViT blocks, the
            injectors and the extractors.
        frozen_stages: as for :class:`TimmViT`: -1 nothing, 0 the ViT's stem (patch embedding, prefix tokens,
            position embedding), k the stem and the first k ViT blocks. The adapter is never frozen: it has no
            pretrained weights, and a frozen pretrained ViT with a trained adapter is the setting this serves.
    """

    def __init__(self, model_name: str, img_size=None, window_size: Optional[int] = None,
                 global_attn_indexes: Sequence[int] = (), interaction_indexes: Optional[Sequence[Sequence[int]]] = None,
                 conv_inplane: int = 64, deform_num_heads: int = 6, n_points: int = 4, deform_ratio: float = 1.0,
                 init_values: float = 0.0, with_cffn: bool = True, cffn_ratio: float = 0.25,
                 add_vit_feature: bool = True, use_extra_extractor: bool = True, drop_path_rate: float = 0.1,
                 out_indices=(0, 1, 2, 3), frozen_stages: int = -1, with_cp: bool = False, in_channels: int = 3,
                 model_kwargs: Optional[dict] = None, init_cfg=None):
        super().__init__(model_name, img_size=img_size, window_size=window_size,
                         global_attn_indexes=global_attn_indexes, final_norm=False, drop_path_rate=drop_path_rate,
                         out_indices=out_indices, frozen_stages=frozen_stages, with_cp=with_cp,
                         in_channels=in_channels, model_kwargs=model_kwargs, init_cfg=init_cfg)
        del self.pyramid  # the adapter makes the pyramid
        dim = self.embed_dim
        self.interaction_indexes = self._check_interactions(interaction_indexes)
        if dim % deform_num_heads:
            raise ConfigError(f'deform_num_heads={deform_num_heads} must divide the ViT width {dim}')
        self.add_vit_feature = add_vit_feature

        self.spm = SpatialPriorModule(in_channels, conv_inplane, dim)
        self.level_embed = nn.Parameter(torch.zeros(3, dim))
        last = len(self.interaction_indexes) - 1
        self.interactions = nn.ModuleList([
            InteractionBlock(dim, deform_num_heads, n_points, deform_ratio, partial(nn.LayerNorm, eps=1e-6),
                             init_values, with_cffn, cffn_ratio, drop_path=drop_path_rate,
                             extra_extractors=2 if use_extra_extractor and i == last else 0, with_cp=with_cp)
            for i in range(len(self.interaction_indexes))])
        self.up = nn.ConvTranspose2d(dim, dim, 2, 2)
        self.num_features = [dim] * self.num_stages
        # BatchNorm per level, the paper's (SyncBN there: tools/train.py --sync-bn)
        self.out_norms = self.build_out_norms(nn.BatchNorm2d, self.num_features)

        for part in (self.spm, self.interactions, self.up, self.out_norms):
            part.apply(init_adapter_weights)
        reset_deformable_attention(self.interactions)
        nn.init.normal_(self.level_embed)
        use_fast_cpu_layers(self)
        self._freeze()

    def _check_interactions(self, indexes) -> List[Tuple[int, int]]:
        if indexes is None:
            return even_interaction_indexes(self.num_blocks)
        groups = [tuple(int(i) for i in g) for g in indexes]
        expected_first = 0
        for group in groups:
            if len(group) != 2 or group[0] != expected_first or group[1] < group[0]:
                raise ConfigError(f'interaction_indexes {[list(g) for g in groups]} must be contiguous inclusive '
                                  f'[first, last] block ranges from 0 to {self.num_blocks - 1}, e.g. '
                                  f'{[list(g) for g in even_interaction_indexes(self.num_blocks)]}')
            expected_first = group[1] + 1
        if expected_first != self.num_blocks:
            raise ConfigError(f'interaction_indexes {[list(g) for g in groups]} end at block {expected_first - 1}, '
                              f'but the ViT has {self.num_blocks} blocks: every block must belong to an interaction')
        return groups

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self.check_input(x)
        c1, c2, c3, c4 = self.spm(x)
        shapes = [tuple(c.shape[-2:]) for c in (c1, c2, c3, c4)]
        c_shapes = shapes[1:]
        c = torch.cat([m.flatten(2).transpose(1, 2) + self.level_embed[i] for i, m in enumerate((c2, c3, c4))],
                      dim=1)
        tokens = self.embed_tokens(x)
        grid = tokens.grid
        x_points = reference_points([grid], x.device)
        c_points = reference_points(c_shapes, x.device)
        for interaction, (first, last) in zip(self.interactions, self.interaction_indexes):
            patches = interaction.inject(tokens.patches, c, x_points, c_shapes)
            tokens = self.run_blocks(TokenMap(patches, tokens.prefix, grid), first, last + 1)
            c = interaction.extract(c, tokens.patches, c_points, c_shapes, grid)
        c2, c3, c4 = (feature_map(t, s) for t, s in zip(c.split([h * w for h, w in c_shapes], dim=1), c_shapes))
        c1 = c1 + self.up(c2)[..., :shapes[0][0], :shapes[0][1]]  # 2 * ceil(H / 8) may exceed ceil(H / 4) by one
        levels = [c1, c2, c3, c4]
        if self.add_vit_feature:
            vit_map = feature_map(tokens.patches, grid)
            levels = [level + resample_to_stride(vit_map, self.patch_size, stride, shape)
                      for level, stride, shape in zip(levels, self.strides, shapes)]
        return tuple(self.out_norms[i](levels[i]) for i in self.out_indices)

    def adapt_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> CheckpointAdaptation:
        """The ViT's tensors through :meth:`TimmViT.adapt_checkpoint` (timm / official layouts, resampling, ...);
        the adapter's own (a vitdense ViT-Adapter checkpoint) as they are. Into a ViT built without a class token
        (``class_token=False``, the paper's), a checkpoint's class token and its position are dropped."""
        adapter = {k: v for k, v in state_dict.items() if k.split('.')[0] in ADAPTER_PARTS}
        vit_part = {k: v for k, v in state_dict.items() if k not in adapter}
        pos_shapes = {k: tuple(v.shape) for k, v in vit_part.items() if k.endswith('pos_embed')}
        dropped_class = self._without_class_token(vit_part)
        a = super().adapt_checkpoint(vit_part)
        if dropped_class:
            a.dropped[dropped_class] = "class token: this ViT runs without one (class_token=False, the paper's)"
            a.note("the class token's position dropped from pos_embed with the class token")
            for key, shape in pos_shapes.items():
                model_key = 'vit.pos_embed'
                if model_key in a.state_dict and shape != tuple(a.state_dict[model_key].shape):
                    a.resized[model_key] = (shape, tuple(a.state_dict[model_key].shape))
        vit_adapted = a.state_dict  # the checkpoint's order kept: its own keys first, renamed ones after them
        ordered = {k: adapter[k] if k in adapter else vit_adapted[k] for k in state_dict
                   if k in adapter or k in vit_adapted}
        ordered.update({k: v for k, v in vit_adapted.items() if k not in ordered})
        a.state_dict = ordered
        return a

    def _without_class_token(self, sd: Dict[str, torch.Tensor]) -> Optional[str]:
        """Remove the class token and its position from a checkpoint's ViT part (in place) when this ViT has no
        class token; the key removed, or None."""
        if getattr(self.vit, 'cls_token', None) is not None:
            return None
        for prefix in ('', 'vit.'):
            key = prefix + 'cls_token'
            if key not in sd:
                continue
            del sd[key]
            pos = sd.get(prefix + 'pos_embed')
            if pos is not None and pos.dim() == 3 and not getattr(self.vit, 'no_embed_class', False):
                n = pos.shape[1] - 1
                if math.isqrt(n) ** 2 == n:  # a square grid after the class position
                    sd[prefix + 'pos_embed'] = pos[:, 1:]
            return key
        return None
