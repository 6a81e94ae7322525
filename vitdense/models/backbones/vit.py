"""Plain ViT (Dosovitskiy et al. 2021; DeiT, Touvron et al. 2021; AugReg, Steiner et al. 2022) as a
dense-prediction backbone, with ViTDet's multi-scale adaptation (Li et al., ECCV 2022).

Weights: patch embedding, class token, position embedding and blocks are timm's (``patch_embed.proj``,
``cls_token``, ``pos_embed``, ``blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``; the blocks are
timm's ``Block`` / ``Attention``, so attention runs through SDPA), so ``vit_*_patch16_224`` / ``deit_*`` state
dicts and the official DeiT release load as they are (:meth:`VisionTransformer.adapt_checkpoint` drops the
classifier and resizes the position embedding).

What dense prediction adds:

* any input H x W >= 32: the image is zero-padded to a multiple of the patch, the token grid is
  ceil(H / 16) x ceil(W / 16), and the absolute position embedding (stored for the ``img_size`` grid; a
  checkpoint made for another grid is resampled once at load time) is bicubically resampled to the current
  grid in every forward, the way timm's ``dynamic_img_size=True`` does.
* a pyramid: the last token map goes through :class:`vitdense.models.necks.SimpleFeaturePyramid` (ViTDet:
  deconvolutions x4 / x2, identity, max-pool /2) *inside* the backbone, then a LayerNorm per level. Keeping
  the adapter in the backbone keeps the DenseBackbone contract that every config relies on (a 4-level NCHW
  pyramid at strides 4/8/16/32 of ceil sizes, output norms, out_indices, frozen stages, lr-decay depths), so
  mmdet's FPN and mmseg's UperNet take a ViT exactly like Swin or ConvNeXt; the same module is registered as
  a neck for single-map backbones.
* optional windowed attention (ViTDet): ``window_size`` > 0 makes every block not listed in
  ``global_attn_indexes`` attend inside non-overlapping windows. The map is zero-padded to whole windows
  internally and the padded keys are masked out, so a window's output never depends on the padding (ViTDet
  lets the zero tokens take part; with the mask, a window covering the whole map equals global attention).
  Windows have no place for a class token: windowed models run with ``with_cls_token=False`` (ViTDet drops
  it too) and the converter drops the token and its position.
* optional decomposed relative position bias (ViTDet, from MViTv2; SAM and timm's ``samvit_*``):
  ``use_rel_pos=True`` gives every block's attention two tables, ``attn.rel_pos_h`` (2 * h - 1, head_dim) and
  ``attn.rel_pos_w`` (2 * w - 1, head_dim), for the h x w extent it attends over: the window in windowed
  blocks, the ``img_size`` grid in global ones. The bias of query q at (i, j) on key (k, l) is
  q . rel_pos_h[i - k + h - 1] + q . rel_pos_w[j - l + w - 1] (unscaled q, after any q norm), added to the
  scaled logits through SDPA's ``attn_mask``. A global block that meets another grid at run time resamples
  its tables linearly along the distance axis to that grid (as ViTDet / SAM do); checkpoints made for
  another window or grid are resampled the same way once at load (``adapt_checkpoint``). Tables
  start at zero (ViTDet's init), so a checkpoint without them (DeiT, MAE) starts as the plain ViT.
* stages for freezing and stage-wise lr decay: the stem (patch embedding, class token, position embedding),
  then 4 equal groups of blocks (3 each for depth 12); stage k also owns pyramid level k - 1 and its norm.
* layer-wise lr decay (ViTDet 0.7, ViT-Adapter 0.95): stem depth 0, block i depth i + 1, everything after
  the blocks (pyramid, output norms) depth ``depth + 1``; ``num_depths = depth + 2``.

For ImageNet classification use timm's own model (``timm.create_model('deit_small_patch16_224')``): its
trunk has exactly these parameter names, so weights move between the two without conversion.
"""
import math
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from timm.layers import Attention, LayerNorm2d, PatchEmbed, resample_abs_pos_embed, to_2tuple, trunc_normal_
from timm.models.vision_transformer import Block
from timm.models.vision_transformer_sam import checkpoint_filter_fn as samvit_checkpoint_filter

from vitdense.checkpoint.adaptation import CheckpointAdaptation
from vitdense.checkpoint.interpolate import resize_abs_pos_embed
from vitdense.errors import CheckpointError, ConfigError
from vitdense.registry import MODELS
from ..cpu_layers import use_fast_cpu_layers
from ..layers import (init_transformer_weights, pad_to_multiple, window_padding_mask, window_partition,
                      window_reverse)
from ..necks.simple_pyramid import SimpleFeaturePyramid
from .base import DenseBackbone, stochastic_depth


def resize_rel_pos_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """A (L, C) decomposed relative position table linearly resampled along the distance axis to (length, C)
    (``F.interpolate`` 'linear', half-pixel centres: distance 0 stays at the centre row), as ViTDet / SAM
    resample theirs."""
    if table.shape[0] == length:
        return table
    resized = F.interpolate(table.t()[None], size=length, mode='linear')
    return resized[0].t()


def relative_table(table: torch.Tensor, size: int) -> torch.Tensor:
    """(size, size, C): the table row for each (query, key) pair of one axis of length ``size``, i.e. row
    q - k + size - 1 of the table resampled to 2 * size - 1 rows."""
    table = resize_rel_pos_table(table, 2 * size - 1)
    positions = torch.arange(size, device=table.device)
    return table[positions[:, None] - positions[None, :] + size - 1]


def decomposed_rel_pos_bias(q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
                            grid: Tuple[int, int]) -> torch.Tensor:
    """Decomposed relative position bias (MViTv2 / ViTDet) for queries ``q`` (B, heads, H*W, C) of an H x W
    grid attending to the same grid: (B, heads, H*W, H*W), bias[(i, j), (k, l)] = q . Rh[i - k] +
    q . Rw[j - l]."""
    H, W = grid
    B, heads, N, C = q.shape
    q = q.reshape(B, heads, H, W, C)
    along_h = torch.einsum('bnhwc,hkc->bnhwk', q, relative_table(rel_pos_h, H).to(q.dtype))
    along_w = torch.einsum('bnhwc,wkc->bnhwk', q, relative_table(rel_pos_w, W).to(q.dtype))
    return (along_h[..., :, None] + along_w[..., None, :]).reshape(B, heads, N, N)


class RelPosAttention(Attention):
    """timm's ``Attention`` (same parameters) plus ViTDet's decomposed relative position tables
    ``rel_pos_h`` / ``rel_pos_w`` for an ``extent`` (h, w) grid (zero init); the forward takes the (h, w) grid
    its tokens form, resampling the tables when it differs from ``extent``."""

    def __init__(self, dim: int, num_heads: int, extent: Tuple[int, int], **kwargs):
        super().__init__(dim, num_heads, **kwargs)
        self.extent = tuple(extent)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * self.extent[0] - 1, self.head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * self.extent[1] - 1, self.head_dim))

    def forward(self, x: torch.Tensor, grid: Tuple[int, int], attn_mask: Optional[torch.Tensor] = None):
        """``x`` (B, H*W, C) tokens of the ``grid`` H x W; ``attn_mask`` an optional boolean key mask (True:
        attend) broadcastable to (B, heads, N, N)."""
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        bias = decomposed_rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, grid)
        if attn_mask is not None:
            bias = bias.masked_fill(~attn_mask, float('-inf'))
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                           dropout_p=self.attn_drop.p if self.training else 0.0)
        x = self.norm(x.transpose(1, 2).reshape(B, N, self.attn_dim))
        return self.proj_drop(self.proj(x))


def windowed_attention(attn: nn.Module, x: torch.Tensor, hw: Tuple[int, int], window_size: int,
                       key_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Run ``attn`` (timm ``Attention`` or :class:`RelPosAttention`) on (B, H*W, C) tokens, globally
    (``window_size`` 0) or inside non-overlapping windows of the H x W grid, zero-padded to whole windows;
    ``key_mask`` (B * nW, 1, 1, N) keeps padded positions out of the keys (None when nothing is padded)."""
    rel_pos = isinstance(attn, RelPosAttention)
    if not window_size:
        return attn(x, hw) if rel_pos else attn(x)
    B, N, C = x.shape
    H, W = hw
    window = (window_size, window_size)
    x = pad_to_multiple(x.view(B, H, W, C), window, channels_last=True)
    Hp, Wp = x.shape[1:3]
    windows = window_partition(x, window)
    x = attn(windows, window, attn_mask=key_mask) if rel_pos else attn(windows, attn_mask=key_mask)
    return window_reverse(x, window, Hp, Wp)[:, :H, :W].reshape(B, N, C)


class ViTBlock(Block):
    """timm's pre-norm ViT block (same parameters; LayerNorm eps 1e-6 unless ``norm_layer`` says otherwise),
    attending globally or inside windows of the grid; with ``rel_pos_grid`` (the model's grid) its attention
    carries decomposed relative position tables sized for its extent: the window in windowed blocks,
    ``rel_pos_grid`` in global ones."""

    def __init__(self, dim: int, num_heads: int, window_size: int = 0,
                 rel_pos_grid: Optional[Tuple[int, int]] = None, **kwargs):
        kwargs.setdefault('norm_layer', partial(nn.LayerNorm, eps=1e-6))
        super().__init__(dim, num_heads, **kwargs)
        self.window_size = window_size
        if rel_pos_grid is not None:  # the same attention parameters as timm's, plus the two tables
            extent = (window_size, window_size) if window_size else tuple(rel_pos_grid)
            self.attn = RelPosAttention(dim, num_heads, extent, qkv_bias=kwargs.get('qkv_bias', False))

    def forward(self, x: torch.Tensor, hw: Tuple[int, int], key_mask: Optional[torch.Tensor] = None):
        attn = windowed_attention(self.attn, self.norm1(x), hw, self.window_size, key_mask)
        x = x + self.drop_path1(self.ls1(attn))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


def encoder_blocks(make_block: Callable[..., nn.Module], depth: int, drop_path_rate: float, *,
                   window_size: int = 0, global_attn_indexes: Sequence[int] = ()) -> nn.ModuleList:
    """The ``depth`` blocks of a token encoder (ViT, hybrid ViT, CeiT): ``make_block(drop_path=, window_size=)``
    with drop path linear over the blocks (:func:`~vitdense.models.backbones.base.stochastic_depth`) and
    windowed attention except in the ``global_attn_indexes`` (``window_size`` 0: global everywhere)."""
    rates = stochastic_depth(drop_path_rate, [depth])[0]
    return nn.ModuleList([make_block(drop_path=rate, window_size=0 if i in global_attn_indexes else window_size)
                          for i, rate in enumerate(rates)])


class TokenEncoder:
    """What ViT-like models share (a mixin for nn.Modules with ``patch_embed`` (image -> NHWC tokens) and
    ``blocks`` (each ``block(x, hw, key_mask)``)): class token and resampled position embedding, the block
    loop with activation checkpointing and the window key mask."""

    def _init_tokens(self, embed_dim: int, pos_grid: Tuple[int, int], with_cls_token: bool) -> None:
        self.num_prefix_tokens = int(with_cls_token)
        self.pos_grid = tuple(pos_grid)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if with_cls_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + pos_grid[0] * pos_grid[1],
                                                  embed_dim))
        trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=0.02)

    def embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Image -> (B, prefix + H*W, C) tokens with position embedding, and the grid (H, W)."""
        return self.tokens_from_grid(self.patch_embed(x))

    def tokens_from_grid(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """(B, H, W, C) patch embeddings -> (B, prefix + H*W, C) tokens with the class token (if any) and the
        position embedding resampled to H x W, and the grid (H, W)."""
        B, H, W, C = x.shape
        x = x.reshape(B, H * W, C)
        pos_embed = resample_abs_pos_embed(self.pos_embed, new_size=[H, W], old_size=list(self.pos_grid),
                                           num_prefix_tokens=self.num_prefix_tokens)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        return x + pos_embed, (H, W)

    def freeze_token_embeddings(self) -> None:
        """No gradients for the class token and position embedding (bare parameters, in no frozen module)."""
        for p in (self.cls_token, self.pos_embed):
            if p is not None:
                p.requires_grad = False

    def key_mask(self, x: torch.Tensor, hw: Tuple[int, int]) -> Optional[torch.Tensor]:
        ws = getattr(self, 'window_size', 0)
        if not ws or (hw[0] % ws == 0 and hw[1] % ws == 0):
            return None
        mask = window_padding_mask(hw[0], hw[1], (ws, ws), device=x.device)  # nW, N
        nW, N = mask.shape
        return mask[None].expand(x.shape[0], nW, N).reshape(-1, 1, 1, N)

    def run_blocks(self, x: torch.Tensor, hw: Tuple[int, int], collect_cls: bool = False):
        """Blocks in order; with ``collect_cls`` also the class token after every block (B, depth, C)."""
        mask = self.key_mask(x, hw)
        class_tokens = []
        for block in self.blocks:
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(block, x, hw, mask, use_reentrant=False)
            else:
                x = block(x, hw, mask)
            if collect_cls:
                class_tokens.append(x[:, 0])
        return (x, torch.stack(class_tokens, dim=1)) if collect_cls else x


class PlainBackbone(TokenEncoder, DenseBackbone):
    """A single-scale token encoder turned into a DenseBackbone by a simple feature pyramid (shared by
    :class:`VisionTransformer` and :class:`vitdense.models.backbones.CeiT`). Subclasses build
    ``patch_embed`` and ``blocks`` and then call :meth:`_init_dense`."""
    arch_hint = 'dict(embed_dim=, depth=, num_heads=)'

    @staticmethod
    def check_windows(depth: int, window_size: int, global_attn_indexes: Sequence[int],
                      with_cls_token: bool) -> Tuple[int, ...]:
        global_attn_indexes = tuple(global_attn_indexes)
        if window_size < 0:
            raise ConfigError(f'window_size={window_size} must be 0 (global attention) or a positive size')
        bad = [i for i in global_attn_indexes if not 0 <= i < depth]
        if bad:
            raise ConfigError(f'global_attn_indexes {global_attn_indexes} must index blocks 0..{depth - 1}')
        if window_size and with_cls_token:
            raise ConfigError('windowed attention has no place for a class token; set with_cls_token=False '
                              '(the converter then drops the checkpoint\'s class token)')
        return global_attn_indexes

    def _init_dense(self, embed_dim: int, img_size, with_cls_token: bool, with_cp: bool) -> None:
        self.embed_dim = embed_dim
        self.depth = len(self.blocks)
        self.with_cp = with_cp
        img_size = to_2tuple(img_size)
        self._init_tokens(embed_dim, (img_size[0] // 16, img_size[1] // 16), with_cls_token)
        # block i belongs to stage i * 4 // depth (4 equal groups when depth is a multiple of 4)
        self.block_stage = [i * self.num_stages // self.depth for i in range(self.depth)]
        self.pyramid = SimpleFeaturePyramid(embed_dim, scale_factors=(4.0, 2.0, 1.0, 0.5), input_stride=16,
                                            out_indices=self.out_indices)
        self.num_features = [embed_dim // 4, embed_dim // 2, embed_dim, embed_dim]
        self.out_norms = self.build_out_norms(LayerNorm2d, self.num_features)

    def forward_tokens(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """Tokens after the last block (B, prefix + H*W, C), before any norm, and the grid (H, W)."""
        x, hw = self.embed(x)
        return self.run_blocks(x, hw), hw

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self.check_input(x)
        image_size = tuple(x.shape[-2:])
        tokens, (H, W) = self.forward_tokens(x)
        grid = tokens[:, self.num_prefix_tokens:].transpose(1, 2).reshape(x.shape[0], -1, H, W)
        maps = self.pyramid(grid, image_size=image_size)
        return tuple(self.out_norms[i](m) for i, m in zip(self.out_indices, maps))

    # ---- freezing -------------------------------------------------------------------------------------
    def frozen_modules(self) -> List[nn.Module]:
        mods = [self.patch_embed]
        for stage in range(self.frozen_stages):
            mods += [b for b, s in zip(self.blocks, self.block_stage) if s == stage]
            mods += [self.pyramid.levels[stage], self.out_norms[stage]]
        return mods

    def _freeze(self) -> None:
        super()._freeze()
        if self.frozen_stages >= 0:  # they belong to the stem
            self.freeze_token_embeddings()

    # ---- lr decay -------------------------------------------------------------------------------------
    def param_depth(self, param_name: str, mode: str) -> Tuple[int, int]:
        """layer_wise: stem 0, block i i + 1, the rest (pyramid, output norms) depth + 1 (ViTDet / BEiT);
        stage_wise: stem 0, stage s (a group of blocks) s + 1, the rest 5."""
        parts = param_name.split('.')
        is_stem = parts[0] in ('patch_embed', 'cls_token', 'pos_embed')
        if mode == 'stage_wise':
            num = self.num_stages + 2
            if is_stem:
                return 0, num
            if parts[0] == 'blocks':
                return self.block_stage[int(parts[1])] + 1, num
            return num - 1, num
        num = self.depth + 2
        if is_stem:
            return 0, num
        if parts[0] == 'blocks':
            return int(parts[1]) + 1, num
        return num - 1, num


@MODELS.register_module()
class VisionTransformer(PlainBackbone):
    """Plain ViT / DeiT with a ViTDet pyramid.

    Args:
        arch: 'tiny' (DeiT-T) | 'small' (DeiT-S, AugReg ViT-S) | 'base' (DeiT-B, AugReg ViT-B) | 'large', or
            dict(embed_dim=, depth=, num_heads=). The layouts are shared; the checkpoint decides the weights.
        img_size: the grid the position embedding is stored (and learned) for, e.g. 224 for ImageNet weights
            used as they are, 512 for 512 x 512 segmentation crops (the checkpoint is resampled at load).
        patch_size: 16 (the pyramid assumes stride-16 tokens).
        with_cls_token: keep the class token in the sequence (timm parity); must be False with windows.
        window_size / global_attn_indexes: ViTDet windowed attention (0: global everywhere), e.g. 14 and
            (2, 5, 8, 11).
        use_rel_pos: ViTDet's decomposed relative position bias in every block (tables
            ``blocks.i.attn.rel_pos_h`` / ``rel_pos_w``, the names timm's ``samvit_*`` use), sized for the window
            in windowed blocks and for the ``img_size`` grid in global ones (as timm's samvit / SAM size them:
            ``img_size=1024`` loads SAM / ViTDet tables unresampled). Needs ``with_cls_token=False``
            (vitdense's choice: the bias has no position for a class token, and ViTDet runs without one). In
            windows that reach into the padding, the padded keys stay masked out and the real tokens keep
            their in-window offsets (vitdense's choice, as for the plain windows; ViTDet / SAM attend to the
            zero padding).
        drop_path_rate: stochastic depth, linear over blocks.
        out_indices / frozen_stages / with_cp / init_cfg: see :class:`DenseBackbone`.
    """
    arch_settings = {
        'tiny': dict(embed_dim=192, depth=12, num_heads=3),
        'small': dict(embed_dim=384, depth=12, num_heads=6),
        'base': dict(embed_dim=768, depth=12, num_heads=12),
        'large': dict(embed_dim=1024, depth=24, num_heads=16),
    }

    def __init__(self, arch='small', img_size=224, patch_size: int = 16, in_channels: int = 3,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, with_cls_token: bool = True,
                 window_size: int = 0, global_attn_indexes: Sequence[int] = (), use_rel_pos: bool = False,
                 drop_path_rate: float = 0.1, out_indices=(0, 1, 2, 3), frozen_stages: int = -1,
                 with_cp: bool = False, init_cfg=None):
        super().__init__(out_indices, frozen_stages, in_channels, init_cfg)
        settings = self.resolve_arch(arch)
        embed_dim, depth, num_heads = settings['embed_dim'], settings['depth'], settings['num_heads']
        if patch_size != 16:
            raise ConfigError(f'VisionTransformer patch_size={patch_size}: the pyramid expects stride-16 tokens '
                              '(patch_size=16)')
        self.global_attn_indexes = self.check_windows(depth, window_size, global_attn_indexes, with_cls_token)
        if use_rel_pos and with_cls_token:
            raise ConfigError('use_rel_pos=True: the relative position bias has no position for a class token; '
                              'set with_cls_token=False (the converter then drops the checkpoint\'s class token)')
        self.window_size = window_size
        self.use_rel_pos = use_rel_pos
        self.patch_embed = PatchEmbed(img_size=None, patch_size=patch_size, in_chans=in_channels,
                                      embed_dim=embed_dim, output_fmt='NHWC', strict_img_size=False,
                                      dynamic_img_pad=True)
        grid = tuple(size // patch_size for size in to_2tuple(img_size))
        self.blocks = encoder_blocks(
            partial(ViTBlock, embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                    rel_pos_grid=grid if use_rel_pos else None),
            depth, drop_path_rate, window_size=window_size, global_attn_indexes=self.global_attn_indexes)
        self._init_dense(embed_dim, img_size, with_cls_token, with_cp)
        self.blocks.apply(init_transformer_weights)
        use_fast_cpu_layers(self)
        self._freeze()

    # ---- checkpoints ---------------------------------------------------------------------------------------
    def adapt_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> CheckpointAdaptation:
        """timm ``vit_*`` / ``deit_*`` and the official DeiT release share this backbone's names: the classifier
        (and DeiT's distillation token) is dropped, ``pos_embed`` resampled to the ``img_size`` grid (keeping the
        class-token position, or dropping it with the token for a backbone without one). timm ``samvit_*``:
        the same, its (1, H, W, C) ``pos_embed`` flattened, SAM's neck dropped, decomposed relative position
        tables resampled to this backbone's windows and grid. The official SAM release (``image_encoder.*``) is
        first mapped by timm's samvit filter (prompt encoder and mask decoder dropped)."""
        adaptation = super().adapt_checkpoint(state_dict)
        keys = adaptation.state_dict
        if any(k.startswith('i2t.') or '.leff.' in k for k in keys):
            raise CheckpointError('this is a CeiT checkpoint (i2t / leff keys); load it into vitdense.CeiT')
        if 'image_encoder.patch_embed.proj.weight' in keys:
            adaptation.apply(lambda sd: samvit_checkpoint_filter(sd, self),
                             note='official SAM layout: the image encoder taken, its prompt encoder / mask decoder '
                                  'dropped', dropped_why="SAM's prompt encoder / mask decoder")
        drop_classifier(adaptation, CLASSIFIER_OR_SAM_NECK)
        flatten_nhwc_pos_embed(adaptation, self)
        adapt_pos_embed(adaptation, self)
        resize_decomposed_rel_pos_tables(adaptation, self)
        keys = adaptation.state_dict
        if 'pos_embed' not in keys and any(k.endswith('attn.rel_pos_h') for k in keys):
            # samvit_*_224 learned without an absolute position embedding: zero computes that network
            keys['pos_embed'] = torch.zeros_like(self.pos_embed)
            adaptation.note('the checkpoint has no absolute position embedding (relative positions only); it '
                            'starts at zero')
        if self.use_rel_pos and not any(k.endswith('attn.rel_pos_h') for k in keys):
            adaptation.note('the checkpoint has no relative position tables; they start at zero (ViTDet from MAE)')
        return adaptation


# ---- checkpoint adaptation shared by the token encoders (ViT, CeiT, hybrid ViT) ----------------------------------
CLASSIFIER_ONLY = {'head.': 'classifier head', 'head_dist.': "DeiT's distillation head",
                   'norm.': "the classifier's final norm", 'fc_norm.': "the classifier's final norm",
                   'pre_logits.': "the classifier's pre-logits layer"}
CLASSIFIER_OR_SAM_NECK = {**CLASSIFIER_ONLY, 'neck.': "SAM's neck (it feeds SAM's mask decoder, not a backbone)"}
PREFIX_TOKENS = ('cls_token', 'dist_token')  # in the order timm / DeiT put them before the patches


def drop_classifier(adaptation: CheckpointAdaptation, parts: Dict[str, str]) -> None:
    """Drop the keys under each prefix of ``parts`` (a classifier's head, final norm, ...; prefix -> why), with
    one note naming what went."""
    dropped = sorted({k.split('.')[0] for k in adaptation.state_dict if k.startswith(tuple(parts))})
    if dropped:
        adaptation.note(f"classifier parts dropped: {', '.join(dropped)}")
    for prefix, why in parts.items():
        adaptation.drop_prefix(prefix, why)


def _is_square(n: int) -> bool:
    return n >= 0 and math.isqrt(n) ** 2 == n


def adapt_pos_embed(adaptation: CheckpointAdaptation, model: TokenEncoder) -> None:
    """Fit ``pos_embed`` (and the prefix tokens) to ``model``: its prefix count and its grid."""
    sd = adaptation.state_dict
    if 'pos_embed' not in sd:
        return
    pos = sd['pos_embed']
    if pos.dim() != 3 or pos.shape[0] != 1:
        raise CheckpointError(f'pos_embed has shape {tuple(pos.shape)}; expected (1, tokens, channels)')
    prefix_in_ckpt = sum(k in sd for k in PREFIX_TOKENS)
    n = pos.shape[1]
    own_grid = tuple(model.pos_grid)
    # the grid: square (ImageNet checkpoints), else the model's own (a vitdense checkpoint of a non-square
    # img_size); positions for the patches only (no_embed_class layouts) are tried after those with the prefix
    grid = None
    for pos_prefix in dict.fromkeys((prefix_in_ckpt, 0)):
        patches = n - pos_prefix
        if _is_square(patches):
            grid = (math.isqrt(patches),) * 2
        elif patches == own_grid[0] * own_grid[1]:
            grid = own_grid
        if grid is not None:
            break
    if grid is None:
        raise CheckpointError(f'pos_embed has {n} positions and the checkpoint {prefix_in_ckpt} prefix tokens: '
                              f'neither a square grid nor this model\'s {own_grid[0]}x{own_grid[1]}; is this a '
                              'plain ViT / CeiT checkpoint?')
    prefix_pos, patch_pos = pos[:, :pos_prefix], pos[:, pos_prefix:]
    if 'dist_token' in sd:
        adaptation.drop(['dist_token'], "DeiT's distillation token (its position goes too)")
        prefix_pos = prefix_pos[:, :1]
        adaptation.note('DeiT distillation token and its position dropped')
    if model.num_prefix_tokens == 0:
        if adaptation.drop(['cls_token'], 'class token: this backbone runs without one (its position goes too)'):
            adaptation.note('class token and its position dropped (the backbone runs without one)')
        prefix_pos = prefix_pos[:, :0]
    elif prefix_pos.shape[1] == 0:
        prefix_pos = pos.new_zeros(1, 1, pos.shape[-1])
        adaptation.note('the checkpoint has no class-token position; it starts at zero')
    if grid != own_grid:
        patch_pos = resize_abs_pos_embed(patch_pos, own_grid, num_prefix_tokens=0, old_size=grid)
        adaptation.note(f'pos_embed interpolated from {grid[0]}x{grid[1]} to {own_grid[0]}x{own_grid[1]}')
    fitted = torch.cat([prefix_pos, patch_pos], dim=1)
    if fitted.shape == pos.shape:
        sd['pos_embed'] = fitted
    else:
        adaptation.resize('pos_embed', fitted)


def flatten_nhwc_pos_embed(adaptation: CheckpointAdaptation, model: TokenEncoder) -> None:
    """timm samvit's (1, H, W, C) ``pos_embed`` -> (1, H * W, C); a non-square grid is resampled to the
    model's here, where its shape is still known."""
    pos = adaptation.state_dict.get('pos_embed')
    if pos is None or pos.dim() != 4:
        return
    if pos.shape[0] != 1:
        raise CheckpointError(f'pos_embed has shape {tuple(pos.shape)}; expected (1, H, W, channels)')
    grid = tuple(pos.shape[1:3])
    pos = pos.reshape(1, grid[0] * grid[1], pos.shape[-1])
    if grid[0] != grid[1] and grid != tuple(model.pos_grid):
        pos = resize_abs_pos_embed(pos, model.pos_grid, num_prefix_tokens=0, old_size=grid)
        adaptation.note(f'pos_embed interpolated from {grid[0]}x{grid[1]} to '
                        f'{model.pos_grid[0]}x{model.pos_grid[1]}')
    adaptation.resize('pos_embed', pos)


DECOMPOSED_REL_POS = ('attn.rel_pos_h', 'attn.rel_pos_w')


def resize_decomposed_rel_pos_tables(adaptation: CheckpointAdaptation, model: nn.Module) -> None:
    """Fit every decomposed relative position table (``*.attn.rel_pos_h`` / ``rel_pos_w``, ViTDet / SAM / timm
    ``samvit_*``) to the model's: linearly resampled along the distance axis (ViTDet's / SAM's rule, the one
    the model applies at run time) when the checkpoint was made for another window or grid.

    Raises :class:`CheckpointError` when the checkpoint has tables and the model none (vitdense's choice: the
    network would silently lose the position bias it was trained with), and for tables that are not
    (2 * size - 1, head_dim).
    """
    sd = adaptation.state_dict
    keys = [k for k in sd if k.endswith(DECOMPOSED_REL_POS)]
    if not keys:
        return
    model_sd = model.state_dict()
    if not any(k.endswith(DECOMPOSED_REL_POS) for k in model_sd):
        raise CheckpointError(f'the checkpoint has decomposed relative position tables ({keys[0]}, ...) and '
                              f'this {type(model).__name__} has none; build it with use_rel_pos=True')
    resized = {}
    for key in keys:
        table = sd[key]
        if table.dim() != 2 or table.shape[0] % 2 == 0:
            raise CheckpointError(f'{key} has shape {tuple(table.shape)}; a decomposed relative position table '
                                  'is (2 * size - 1, head_dim)')
        if key not in model_sd or model_sd[key].shape[0] == table.shape[0]:
            continue
        length = model_sd[key].shape[0]
        adaptation.resize(key, resize_rel_pos_table(table.float(), length).to(table.dtype))
        resized.setdefault(((table.shape[0] + 1) // 2, (length + 1) // 2), []).append(key)
    for (old, new), moved in resized.items():
        adaptation.note(f'{len(moved)} decomposed relative position tables interpolated from extent {old} to {new}')
