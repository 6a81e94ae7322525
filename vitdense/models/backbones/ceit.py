"""CeiT: Convolution-enhanced image Transformer (Yuan et al., ICCV 2021, arXiv 2103.11816), for ImageNet
classification (:class:`CeiTClassifier`) and as a dense-prediction backbone (:class:`CeiT`).

CeiT keeps DeiT's layout (width 192 / 384 / 768, 12 blocks, 3 / 6 / 12 heads, class token, absolute position
embedding, stride-16 tokens) and adds three convolution designs:

* Image-to-Tokens (``patch_embed``, :class:`Image2Tokens`): conv 7x7 stride 2 + BN + max-pool 3x3 stride 2
  (64 channels at stride 4), then non-overlapping 4 x 4 patches projected to the width -> stride-16 tokens.
* Locally-enhanced Feed-Forward (``blocks.i.leff``, :class:`LocallyEnhancedFeedForward`) instead of the MLP:
  the patch tokens are put back on their H x W grid (any H, W: nothing assumes a square) and go through a
  1x1 up-projection + BN + GELU, a depth-wise 3x3 conv + BN + GELU and a 1x1 down-projection + BN; the class
  token leaves the LeFF as it entered it (so the residual adds its normalised value, as in the paper's
  split / concat and the coeusguo/ceit code). The LeFF ends with that BN and no activation, as in the
  coeusguo/ceit code that trained the published weights. The paper's equations put a GELU after it too;
  ``leff_final_act=True`` adds it. Making the official form the default (``leff_final_act=False``) is
  vitdense's choice, so that every config fine-tunes the network its checkpoint was trained as; the converter
  refuses to load coeusguo/ceit weights into the GELU variant.
* Layer-wise Class-token Attention (``lca``, classifier only): the class tokens of all 12 blocks (plus a
  learned per-layer embedding ``pos_layer_embed``, which starts at zero as in the coeusguo/ceit code) form
  a sequence in which only the last one queries; an MLP follows, then the final LayerNorm and the linear head.

Parameter counts of the classifier with 1000 classes (tests/models/backbones/test_ceit.py): CeiT-T 6,356,904
(paper: 6.4M), CeiT-S 24,204,840 (24.2M), CeiT-B 94,405,416 (94.4M). These fix the I2T width at 64 channels
(32 would give 6.25M for CeiT-T) and qkv biases on, as in the coeusguo/ceit code. The dense :class:`CeiT`
drops the LCA, final norm and head and, like the plain ViT, rescales its last stride-16 token map with
ViTDet's simple feature pyramid (strides 4 / 8 / 16 / 32).

Parameter names are vitdense's; ``adapt_checkpoint`` maps the coeusguo/ceit names
(``i2t.backbone.conv`` -> ``patch_embed.conv``, ``leff.conv1/bn1/conv2/bn2/conv3/bn3`` ->
``leff.up_proj/up_norm/dw_conv/dw_norm/down_proj/down_norm``, ``lca.feedforward`` -> ``lca.mlp``).
"""
from functools import partial
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from timm.layers import Attention, DropPath, Mlp, to_2tuple

from vitdense.checkpoint.adaptation import CheckpointAdaptation
from vitdense.errors import CheckpointError, ConfigError
from vitdense.registry import MODELS
from ..cpu_layers import use_fast_cpu_layers
from ..layers import init_transformer_weights, pad_to_multiple
from .base import lookup_arch
from .vit import PlainBackbone, TokenEncoder, adapt_pos_embed, drop_classifier, encoder_blocks, windowed_attention

LayerNorm = partial(nn.LayerNorm, eps=1e-6)

CEIT_ARCHS = {
    'tiny': dict(embed_dim=192, depth=12, num_heads=3),
    'small': dict(embed_dim=384, depth=12, num_heads=6),
    'base': dict(embed_dim=768, depth=12, num_heads=12),
}


class Image2Tokens(nn.Module):
    """I2T: image (B, C, H, W) -> tokens (B, ceil(H/16), ceil(W/16), embed_dim), NHWC.

    The image is zero-padded at the bottom/right to a multiple of 16 first, so every stage divides evenly.
    """
    stride = 16

    def __init__(self, in_channels: int = 3, stem_channels: int = 64, embed_dim: int = 192,
                 patch_size: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, stem_channels, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(stem_channels)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.proj = nn.Conv2d(stem_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        if 4 * patch_size != self.stride:
            raise ConfigError(f'Image2Tokens patch_size={patch_size}: the pyramid expects stride-16 tokens '
                              '(conv and pool give stride 4, so patch_size=4)')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.pool(self.bn(self.conv(pad_to_multiple(x, self.stride)))))
        return x.permute(0, 2, 3, 1)


class LocallyEnhancedFeedForward(nn.Module):
    """LeFF on (B, prefix + H*W, C) tokens: the H x W patch tokens are convolved on their grid, prefix
    (class) tokens pass unchanged. Projections are 1x1 convolutions (= per-token linear layers).

    ``final_act``: a GELU after the last BN. False (the default) is the coeusguo/ceit LeFF the official
    weights were trained with; True is the paper's equations.
    """

    def __init__(self, dim: int, hidden_dim: int, kernel_size: int = 3, num_prefix_tokens: int = 1,
                 final_act: bool = False):
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens
        self.up_proj = nn.Conv2d(dim, hidden_dim, kernel_size=1)
        self.up_norm = nn.BatchNorm2d(hidden_dim)
        self.dw_conv = nn.Conv2d(hidden_dim, hidden_dim, kernel_size=kernel_size, padding=kernel_size // 2,
                                 groups=hidden_dim)
        self.dw_norm = nn.BatchNorm2d(hidden_dim)
        self.down_proj = nn.Conv2d(hidden_dim, dim, kernel_size=1)
        self.down_norm = nn.BatchNorm2d(dim)
        self.act = nn.GELU()
        self.final_act = final_act

    def forward(self, x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
        prefix, tokens = x[:, :self.num_prefix_tokens], x[:, self.num_prefix_tokens:]
        B, N, C = tokens.shape
        y = tokens.transpose(1, 2).reshape(B, C, hw[0], hw[1])  # spatial restore
        y = self.act(self.up_norm(self.up_proj(y)))
        y = self.act(self.dw_norm(self.dw_conv(y)))
        y = self.down_norm(self.down_proj(y))
        if self.final_act:
            y = self.act(y)
        return torch.cat([prefix, y.flatten(2).transpose(1, 2)], dim=1)


class CeiTBlock(nn.Module):
    """Pre-norm block: multi-head self-attention (timm ``Attention``, SDPA; optionally windowed) + LeFF."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, window_size: int = 0, num_prefix_tokens: int = 1,
                 leff_kernel_size: int = 3, leff_final_act: bool = False):
        super().__init__()
        self.window_size = window_size
        self.norm1 = LayerNorm(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = LayerNorm(dim)
        self.leff = LocallyEnhancedFeedForward(dim, int(dim * mlp_ratio), leff_kernel_size, num_prefix_tokens,
                                               final_act=leff_final_act)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, hw: Tuple[int, int], key_mask: Optional[torch.Tensor] = None):
        x = x + self.drop_path1(windowed_attention(self.attn, self.norm1(x), hw, self.window_size, key_mask))
        return x + self.drop_path2(self.leff(self.norm2(x), hw))


class ClassTokenAttention(nn.Module):
    """Attention in which only the last token (the last layer's class token) queries all tokens.

    Same parameters as a timm ``Attention`` (``qkv``, ``proj``): the query rows of ``qkv`` are applied to the
    last token only, the key/value rows to all, so the output equals full self-attention's last row.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, C) -> (B, 1, C)."""
        B, L, C = x.shape
        q_weight, kv_weight = self.qkv.weight.split([C, 2 * C])
        q_bias, kv_bias = self.qkv.bias.split([C, 2 * C]) if self.qkv.bias is not None else (None, None)
        q = F.linear(x[:, -1:], q_weight, q_bias).view(B, 1, self.num_heads, -1).transpose(1, 2)
        k, v = F.linear(x, kv_weight, kv_bias).view(B, L, 2, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, 1, C))


class LayerClassTokenAttention(nn.Module):
    """LCA: the last class token attends over the class tokens of all layers, then an MLP (no drop path)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = ClassTokenAttention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, class_tokens: torch.Tensor) -> torch.Tensor:
        """(B, num_layers, C) -> (B, C)."""
        x = class_tokens[:, -1:] + self.attn(self.norm1(class_tokens))
        x = x + self.mlp(self.norm2(x))
        return x[:, 0]


@MODELS.register_module()
class CeiT(PlainBackbone):
    """CeiT-T/S/B dense backbone: I2T + LeFF blocks (no LCA), then ViTDet's simple feature pyramid.

    Args:
        arch: 'tiny' | 'small' | 'base' or dict(embed_dim=, depth=, num_heads=).
        img_size: grid the position embedding is stored for (224: ImageNet weights as they are).
        stem_channels: I2T convolution channels (64 in CeiT). leff_kernel_size: LeFF depth-wise kernel (3).
        leff_final_act: GELU after the LeFF's last BN. False (default): the coeusguo/ceit LeFF, the network
            the official ``ceit_*_patch16_224.pth`` weights compute (loading them with True is refused);
            True: the paper's equations.
        with_cls_token / window_size / global_attn_indexes: as in :class:`VisionTransformer` (CeiT is
            pretrained with a class token and global attention, the default).
        drop_path_rate / out_indices / frozen_stages / with_cp / init_cfg: see :class:`DenseBackbone`.
    """
    arch_settings = CEIT_ARCHS

    def __init__(self, arch='tiny', img_size=224, in_channels: int = 3, stem_channels: int = 64,
                 patch_size: int = 4, mlp_ratio: float = 4.0, qkv_bias: bool = True, leff_kernel_size: int = 3,
                 leff_final_act: bool = False, with_cls_token: bool = True, window_size: int = 0,
                 global_attn_indexes: Sequence[int] = (), drop_path_rate: float = 0.1,
                 out_indices=(0, 1, 2, 3), frozen_stages: int = -1, with_cp: bool = False, init_cfg=None):
        super().__init__(out_indices, frozen_stages, in_channels, init_cfg)
        settings = self.resolve_arch(arch)
        embed_dim, depth, num_heads = settings['embed_dim'], settings['depth'], settings['num_heads']
        self.global_attn_indexes = self.check_windows(depth, window_size, global_attn_indexes, with_cls_token)
        self.window_size = window_size
        self.patch_embed = Image2Tokens(in_channels, stem_channels, embed_dim, patch_size)
        self.blocks = encoder_blocks(
            partial(CeiTBlock, embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                    num_prefix_tokens=int(with_cls_token), leff_kernel_size=leff_kernel_size,
                    leff_final_act=leff_final_act),
            depth, drop_path_rate, window_size=window_size, global_attn_indexes=self.global_attn_indexes)
        self._init_dense(embed_dim, img_size, with_cls_token, with_cp)
        self.blocks.apply(init_transformer_weights)
        use_fast_cpu_layers(self)
        self._freeze()

    def adapt_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> CheckpointAdaptation:
        """coeusguo/ceit (or vitdense CeiTClassifier) weights for the dense backbone: names remapped, the
        classifier's LCA, layer embedding, final norm and head dropped, ``pos_embed`` fitted to the grid."""
        return adapt_ceit_checkpoint(super().adapt_checkpoint(state_dict), self, drop_classifier_parts=True)


@MODELS.register_module()
class CeiTClassifier(TokenEncoder, BaseModule):
    """CeiT-T/S/B ImageNet classifier: I2T, LeFF blocks, LCA over the 12 class tokens, LayerNorm, linear head.

    Input: any H x W (position embedding resampled to the grid, as in the dense backbone).
    Output: (B, num_classes) logits. ``leff_final_act``: as in :class:`CeiT` (default False, the official LeFF).
    ``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` loads a coeusguo/ceit (or vitdense) classifier
    checkpoint through :func:`vitdense.checkpoint.load_pretrained`, LCA and head included.
    """
    arch_settings = CEIT_ARCHS

    def __init__(self, arch='tiny', num_classes: int = 1000, img_size=224, in_channels: int = 3,
                 stem_channels: int = 64, patch_size: int = 4, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 leff_kernel_size: int = 3, leff_final_act: bool = False, drop_path_rate: float = 0.1,
                 with_cp: bool = False, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        settings = lookup_arch('CeiTClassifier', arch, self.arch_settings, 'dict(embed_dim=, depth=, num_heads=)')
        embed_dim, depth, num_heads = settings['embed_dim'], settings['depth'], settings['num_heads']
        self.with_cp = with_cp
        self.window_size = 0
        self.patch_embed = Image2Tokens(in_channels, stem_channels, embed_dim, patch_size)
        img_size = to_2tuple(img_size)
        self._init_tokens(embed_dim, (img_size[0] // 16, img_size[1] // 16), with_cls_token=True)
        self.blocks = encoder_blocks(
            partial(CeiTBlock, embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, num_prefix_tokens=1,
                    leff_kernel_size=leff_kernel_size, leff_final_act=leff_final_act),
            depth, drop_path_rate)
        self.pos_layer_embed = nn.Parameter(torch.zeros(1, depth, embed_dim))  # zeros, as coeusguo/ceit
        self.lca = LayerClassTokenAttention(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias)
        self.norm = LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(init_transformer_weights)

    def init_weights(self):
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            if cfg.get('checkpoint') is None:  # from scratch
                self.init_cfg = None
                return super().init_weights()
            from vitdense.checkpoint import load_pretrained
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'))
            self._is_init = True
            return
        super().init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> (B, C) pre-logits feature (normalised LCA output)."""
        x, hw = self.embed(x)
        _, class_tokens = self.run_blocks(x, hw, collect_cls=True)
        return self.norm(self.lca(class_tokens + self.pos_layer_embed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def adapt_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> CheckpointAdaptation:
        """coeusguo/ceit weights: names remapped, ``pos_embed`` fitted to the grid; LCA and head kept."""
        return adapt_ceit_checkpoint(CheckpointAdaptation.of(state_dict), self, drop_classifier_parts=False)


# ---- checkpoint layouts -------------------------------------------------------------------------------------
CEIT_OFFICIAL_RENAMES = (
    (r'^i2t\.backbone\.', 'patch_embed.'),
    (r'^i2t\.proj\.', 'patch_embed.proj.'),
    (r'\.leff\.conv1\.', '.leff.up_proj.'),
    (r'\.leff\.bn1\.', '.leff.up_norm.'),
    (r'\.leff\.conv2\.', '.leff.dw_conv.'),
    (r'\.leff\.bn2\.', '.leff.dw_norm.'),
    (r'\.leff\.conv3\.', '.leff.down_proj.'),
    (r'\.leff\.bn3\.', '.leff.down_norm.'),
    (r'^lca\.feedforward\.', 'lca.mlp.'),
)
CEIT_CLASSIFIER_ONLY = {'lca.': 'layer-wise class-token attention of the classifier',
                        'pos_layer_embed': "the LCA's layer embedding", 'norm.': "the classifier's final norm",
                        'head.': 'classifier head'}


def adapt_ceit_checkpoint(adaptation: CheckpointAdaptation, model: nn.Module,
                          drop_classifier_parts: bool) -> CheckpointAdaptation:
    """coeusguo/ceit names -> vitdense's (refused, one line, by a model built with ``leff_final_act=True``: its
    LeFFs add a GELU the official ones do not have); the classifier parts dropped for the dense backbone;
    ``pos_embed`` fitted to ``model``."""
    if any(k.startswith('i2t.') for k in adaptation.state_dict):
        if any(getattr(m, 'final_act', False) for m in model.modules()):
            raise CheckpointError(
                f'coeusguo/ceit weights were trained without a GELU after the LeFF\'s last BatchNorm, but this '
                f'{type(model).__name__} has leff_final_act=True; set leff_final_act=False (the default) to load '
                'them')
        adaptation.rename(CEIT_OFFICIAL_RENAMES, note='coeusguo/ceit layout remapped')
    if drop_classifier_parts:
        drop_classifier(adaptation, CEIT_CLASSIFIER_ONLY)
    adapt_pos_embed(adaptation, model)
    return adaptation
