"""BOAT: Bilateral Local Attention Vision Transformer (Yu et al., arXiv 2201.13027) as dense-prediction backbones.

A bilateral local attention block is ``T1 = T + ISLA(LN(T))``, ``T2 = T1 + FSLA(LN(T1))``,
``T3 = T2 + MLP(LN(T2))``: image-space local attention (Swin's (shifted) windows in :class:`BOATSwin`,
CSWin's cross-shaped stripes in :class:`BOATCSWin`) followed by feature-space local attention, which groups
tokens by content and attends inside each group.

FSLA (:class:`FeatureSpaceLocalAttention`), for any H x W and any batch size (helpers in
:mod:`vitdense.models.layers`):

* every (image, head) clusters its own queries (detached, no gradient) with K = round(log2(N / leaf_size))
  levels of balanced binary clustering, each level for all images, heads and nodes at once. Per node two
  centroids and every token's ratio ``r = s(t, c1) / s(t, c2)``, ``s = 1 + cos``; the tokens ranked by r
  make two equal halves. 'paper' layout (the paper's balanced binary clustering,
  :func:`~vitdense.models.layers.balanced_kmeans_split`): ``cluster_iters`` balanced k-means steps, every
  assignment hard and balanced (first half of the ranking -> c1, second -> c2), each centroid the mean of
  its half. 'pytorch-boat' layout (:func:`~vitdense.models.layers.split_ratio`): ``cluster_iters`` soft
  nearest-centroid refinements, balanced only in the final split. ``cluster_dim`` optionally clusters a
  fixed random projection of the queries (cheaper).
* token counts that do not halve evenly: a node of n real tokens gives ceil(n/2) to its first child and
  floor(n/2) to its second (m = ceil(N / 2^K) per leaf, or m - 1). Inside the tree the difference is made of
  zero "padded slots" on a static layout, with ratio +inf (sorted last, never a seed or a centroid weight).
  Leaves hold real tokens only: each is the first / last ``m + overlap`` sorted tokens of its parent, so all
  have the same size, no attention mask is needed and a padded slot never gives or receives attention; the
  result equals a clustering of the real tokens alone (tested against such a reference).
* at the last level sibling clusters overlap: 2n shared tokens (n = ``overlap``, 20 in the paper; one or two
  more when a parent holds fewer than 2m). 'paper' layout: a shared token is a query in both clusters and
  gets the mean of its two outputs (the paper does not say how the two outputs combine: the mean is
  vitdense's choice, see :func:`~vitdense.models.layers.balanced_cluster_layout`). 'pytorch-boat' layout:
  every token is the query of its own half only and just keys / values overlap (what the public code does).
* all leaves of all images and heads go through one ``scaled_dot_product_attention`` call, rows gathered
  straight from the fused qkv projection; a depthwise 3x3 conv on V over the spatial map (locally-enhanced
  positional encoding) is added before the output projection.

Layouts (``layout=``):

* ``'paper'`` (default): FSLA in every block, with drop path; the paper's balanced iterations (above).
  Where the paper is silent the choices are vitdense's: centroids seeded from the token least similar to
  the node's mean direction and its mirror image about it (deterministic and independent of token order, so
  the clustering is equivariant to a permutation of the tokens), s = 1 + cos (positive, so the ratio is
  defined), shared tokens' two outputs averaged, and 2 iterations by default (``cluster_iters``, as many
  refinements as pytorch-boat runs).
* ``'pytorch-boat'``: the block placement and quirks of mahaoyuHKU/pytorch-boat, whose ImageNet weights are
  the only public ones. BOAT-Swin: FSLA (``attnC`` / ``norm4`` there) only in the shifted blocks of stages
  1-3 (at 224 the 7x7 stage has no shift, hence no FSLA), without drop path. BOAT-CSWin: FSLA
  (``content_attn`` / ``norm3``) in the even blocks of every stage, with drop path, q.k unscaled (its
  ``qk_scale=qkv_bias`` makes the scale 1). Both: centroids seeded from the means of the node's two halves,
  2 soft k-means steps on raw vectors, a sort per level, keys-only overlap of 20, leaves of 49. At
  N = 49 * 2^k this is the public computation (tested against a restatement of it); at N = 49 (BOAT-CSWin's
  last stage at 224) pytorch-boat lets an image attend to 20 tokens of the next image in the batch, here
  the 49 tokens attend to each other.

Image-space attention: BOAT-Swin reuses :mod:`.swin` (window attention, padding, shift masks, patch merging)
by subclassing; BOAT-CSWin has a batched cross-shaped window attention: half the heads in vertical stripes
(full height, width sw), half in horizontal ones, all stripes of all images in one SDPA call per direction,
maps zero-padded to a whole number of stripes with the padded keys masked, LePE (depthwise 3x3 conv on V
inside each stripe); the last stage attends globally. Stem: conv 7x7 stride 4 + LN, merging: conv 3x3
stride 2 + LN (pytorch-boat / CSWin names are remapped by :mod:`vitdense.checkpoint.boat`).
"""
from functools import partial
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from timm.layers import DropPath, Mlp, PatchEmbed, trunc_normal_

from vitdense.errors import ConfigError
from vitdense.registry import MODELS
from ..layers import (balanced_cluster_layout, cluster_levels, clustered_attention, init_transformer_weights,
                      hierarchical_cluster_permutation, pad_to_multiple, window_padding_mask,
                      window_partition, window_reverse)
from .base import DenseBackbone, stochastic_depth
from .swin import SwinBlock, SwinStage, SwinTransformer, check_always_shift

LAYOUTS = ('paper', 'pytorch-boat')


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {LAYOUTS}, got '{layout}'")


class FeatureSpaceLocalAttention(nn.Module):
    """FSLA on an NHWC map of any size: attention inside balanced content clusters (see the module doc).

    Args:
        leaf_size: target tokens per cluster (K = round(log2(N / leaf_size)) levels; below sqrt(2) leaves:
            one cluster, i.e. full attention over the map).
        overlap: tokens each of two sibling clusters takes from the other at the last level (n in the paper).
        shared_queries: True: shared tokens are queries in both clusters, outputs averaged (paper);
            False: keys / values only (pytorch-boat).
        cluster_iters / seeding: centroid updates and seeding, see
            :func:`vitdense.models.layers.balanced_kmeans_split` / :func:`vitdense.models.layers.split_ratio`.
        assignment: 'balanced' (the paper: hard, balanced assignments in every iteration) | 'soft'
            (pytorch-boat: soft refinement, balanced final split), see
            :func:`vitdense.models.layers.hierarchical_cluster_permutation`.
        cluster_dim: cluster on the queries projected to this many dims per head (a fixed random orthonormal
            projection folded into the query weights: cheaper, approximately the same cosines); None: the
            full head dim.
        qk_scale: None -> head_dim ** -0.5.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 leaf_size: int = 49, overlap: int = 20, shared_queries: bool = True, cluster_iters: int = 2,
                 seeding: str = 'farthest', assignment: str = 'balanced', cluster_dim: Optional[int] = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f'dim {dim} is not divisible by num_heads {num_heads}')
        head_dim = dim // num_heads
        self.num_heads = num_heads
        self.scale = qk_scale if qk_scale is not None else head_dim ** -0.5
        self.leaf_size = leaf_size
        self.overlap = overlap
        self.shared_queries = shared_queries
        self.cluster_iters = cluster_iters
        self.seeding = seeding
        if assignment not in ('soft', 'balanced'):
            raise ConfigError(f"assignment must be 'soft' or 'balanced', got '{assignment}'")
        self.assignment = assignment
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.lepe = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        if cluster_dim is not None and cluster_dim < head_dim:
            gen = torch.Generator().manual_seed(head_dim * 1000 + cluster_dim)
            basis = torch.linalg.qr(torch.randn(num_heads, head_dim, cluster_dim, generator=gen))[0]
            self.register_buffer('cluster_proj', basis, persistent=False)   # (heads, head_dim, cluster_dim)
        else:
            self.cluster_proj = None

    def cluster_features(self, x: torch.Tensor, qkv: torch.Tensor) -> torch.Tensor:
        """(B * heads, N, r) detached features to cluster: each head's queries (qkv: (B, N, 3, heads, d)),
        or their projection, computed straight from x with the projected query weights (one small GEMM)."""
        B, N, _, h, d = qkv.shape
        if self.cluster_proj is None:
            return qkv[:, :, 0].detach().transpose(1, 2).reshape(B * h, N, d)
        r = self.cluster_proj.shape[-1]
        weight = self.qkv.weight.detach()[:h * d].view(h, d, -1)
        proj = self.cluster_proj.to(weight.dtype)
        w = torch.einsum('hdr,hdc->hrc', proj, weight).reshape(h * r, -1)
        b = None if self.qkv.bias is None else torch.einsum('hdr,hd->hr', proj,
                                                            self.qkv.bias.detach()[:h * d].view(h, d)).flatten()
        feats = F.linear(x.detach().reshape(B, N, -1), w, b).view(B, N, h, r)
        return feats.transpose(1, 2).reshape(B * h, N, r)

    def cluster(self, x: torch.Tensor, qkv: torch.Tensor):
        """-> (permutation (B * heads, N_p), layout), or (None, None) when N fits one cluster."""
        N = qkv.shape[1]
        levels = cluster_levels(N, self.leaf_size)
        if levels == 0:
            return None, None
        # under torch.compile, trace the (pure) layout builder itself: dynamo ignores lru_cache and warns
        build = balanced_cluster_layout.__wrapped__ if torch.compiler.is_compiling() else balanced_cluster_layout
        layout = build(N, levels, self.overlap, self.shared_queries, qkv.device)
        feats = self.cluster_features(x, qkv)
        feats = feats.float() if feats.dtype in (torch.float16, torch.bfloat16) else feats  # float32 at least
        perm = hierarchical_cluster_permutation(feats, layout, self.cluster_iters, self.seeding, self.assignment)
        return perm, layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        h, N = self.num_heads, H * W
        qkv = self.qkv(x)                                                      # (B, H, W, 3C): [q | k | v]
        heads = qkv.view(B, N, 3, h, C // h)
        dropout = self.attn_drop if self.training else 0.0
        perm, layout = self.cluster(x, heads)
        if perm is None:  # one cluster: plain attention over all tokens
            q, k, v = heads.permute(2, 0, 3, 1, 4).unbind(0)
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=self.scale).transpose(1, 2)
        else:
            out = clustered_attention(heads, perm, layout, scale=self.scale, dropout_p=dropout)
        out = out.reshape(B, H, W, C)
        lepe = self.lepe(qkv[..., 2 * C:].permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.proj_drop(self.proj(out + lepe))


def fsla_settings(layout: str, family: str) -> dict:
    """FSLA keyword arguments of a layout ('paper' | 'pytorch-boat') for a family ('swin' | 'cswin')."""
    _check_layout(layout)
    if layout == 'paper':
        return dict(shared_queries=True, seeding='farthest', assignment='balanced')
    settings = dict(shared_queries=False, seeding='halves', assignment='soft', leaf_size=49, overlap=20,
                    cluster_iters=2, cluster_dim=None)
    if family == 'cswin':
        settings['qk_scale'] = 1.0  # pytorch-boat passes qk_scale=qkv_bias (True)
    return settings


# ---------------------------------------------------------------------------------------------------------
# BOAT-Swin
# ---------------------------------------------------------------------------------------------------------
class BOATSwinBlock(SwinBlock):
    """Swin block + FSLA between the window attention and the MLP (``fsla=None``: a plain Swin block).

    ``always_shift`` as in :class:`SwinBlock`: False gives classification Swin's windows (no shift and the
    window shrunk to the map where the map fits in one window), as pytorch-boat has at 224; the dense
    default keeps mmdet's always-shift behaviour.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, shifted: bool = False,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path: float = 0.0, norm_layer=nn.LayerNorm,
                 fsla: Optional[dict] = None, fsla_on: str = 'all', fsla_drop_path: bool = True,
                 always_shift: bool = True):
        super().__init__(dim, num_heads, window_size=window_size, shifted=shifted, mlp_ratio=mlp_ratio,
                         qkv_bias=qkv_bias, drop_path=drop_path, norm_layer=norm_layer, always_shift=always_shift)
        with_fsla = fsla is not None and (fsla_on == 'all' or (fsla_on == 'shifted' and shifted))
        if with_fsla:
            self.norm_fsla = norm_layer(dim)
            self.fsla = FeatureSpaceLocalAttention(dim, num_heads, qkv_bias=qkv_bias, **fsla)
            self.drop_path_fsla = DropPath(drop_path) if drop_path > 0 and fsla_drop_path else nn.Identity()
        else:
            self.fsla = None

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x + self.drop_path1(self.window_attention(self.norm1(x), mask))
        if self.fsla is not None:
            x = x + self.drop_path_fsla(self.fsla(self.norm_fsla(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


@MODELS.register_module()
class BOATSwin(SwinTransformer):
    """BOAT-Swin-T/S/B: Swin's pyramid with a FSLA in each block (see the module doc for ``layout``).

    Args:
        arch: 'tiny' | 'small' | 'base' (Swin's settings) or dict(embed_dim=, depths=, num_heads=).
        layout: 'paper' | 'pytorch-boat' (FSLA placement, scaling and clustering of the public weights).
        leaf_size / overlap / cluster_iters / cluster_dim: FSLA clustering, see
            :class:`FeatureSpaceLocalAttention` ('pytorch-boat' fixes them to 49 / 20 / 2 / None).
        always_shift: False reproduces classification Swin (no shift, window shrunk to the map, where the map
            fits in one window: the 7 x 7 last stage at 224), see :class:`SwinTransformer`.
        Others: see :class:`SwinTransformer` / :class:`DenseBackbone`.
    """
    arch_settings = {k: v for k, v in SwinTransformer.arch_settings.items() if k != 'large'}

    def __init__(self, arch='tiny', in_channels: int = 3, patch_size: int = 4, window_size: int = 7,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.2,
                 layout: str = 'paper', leaf_size: int = 49, overlap: int = 20, cluster_iters: int = 2,
                 cluster_dim: Optional[int] = None,
                 always_shift: bool = True, out_indices=(0, 1, 2, 3), frozen_stages: int = -1,
                 with_cp: bool = False, init_cfg=None):
        DenseBackbone.__init__(self, out_indices, frozen_stages, in_channels, init_cfg)
        check_always_shift(type(self).__name__, always_shift)
        self.always_shift = always_shift
        settings = self.resolve_arch(arch)
        embed_dim, depths, num_heads = settings['embed_dim'], settings['depths'], settings['num_heads']
        self.layout = layout
        fsla = dict(leaf_size=leaf_size, overlap=overlap, cluster_iters=cluster_iters, cluster_dim=cluster_dim)
        fsla.update(fsla_settings(layout, 'swin'))
        self.depths = tuple(depths)
        self.window_size = window_size
        self.patch_embed = PatchEmbed(img_size=None, patch_size=patch_size, in_chans=in_channels,
                                      embed_dim=embed_dim, norm_layer=nn.LayerNorm, output_fmt='NHWC',
                                      strict_img_size=False, dynamic_img_pad=True)
        dims = [embed_dim * 2 ** i for i in range(self.num_stages)]
        self.num_features = dims
        dpr = stochastic_depth(drop_path_rate, depths)
        stages = []
        for i in range(self.num_stages):
            if layout == 'paper':
                placement = dict(fsla_on='all', fsla_drop_path=True)
            else:  # shifted blocks of the stages that are larger than a window at 224, no drop path
                placement = dict(fsla_on='shifted' if i < self.num_stages - 1 else 'none', fsla_drop_path=False)
            block_cls = partial(BOATSwinBlock, fsla=fsla, always_shift=always_shift, **placement)
            stages.append(SwinStage(dims[max(i - 1, 0)], dims[i], depths[i], num_heads[i], window_size,
                                    downsample=i > 0, drop_path=dpr[i], mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                                    block_cls=block_cls, with_cp=with_cp))
        self.layers = nn.ModuleList(stages)
        self.out_norms = self.build_out_norms(nn.LayerNorm, dims)
        self.apply(init_transformer_weights)
        self._freeze()


# ---------------------------------------------------------------------------------------------------------
# CSWin pieces and BOAT-CSWin
# ---------------------------------------------------------------------------------------------------------
def stripe_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: Tuple[int, int],
                     num_heads: int, lepe: nn.Module, scale: float, dropout_p: float = 0.0) -> torch.Tensor:
    """Attention inside (wh x ww) windows of NHWC q / k / v (B, H, W, c), all windows in one SDPA call.

    The map is zero-padded to whole windows; padded keys are masked, padded queries cropped. ``lepe``
    (depthwise conv) runs on V inside each window (zeros beyond it), as CSWin's LePE, and is added per token.
    """
    B, H, W, c = q.shape
    wh, ww = window
    L = wh * ww
    windows = window_partition(pad_to_multiple(torch.cat([q, k, v], -1), window), window)  # (B nW, L, 3c)
    Hp, Wp = -(-H // wh) * wh, -(-W // ww) * ww
    BW = windows.shape[0]
    qw, kw, vw = windows.view(BW, L, 3, num_heads, c // num_heads).permute(2, 0, 3, 1, 4).unbind(0)
    pos = lepe(windows[..., 2 * c:].transpose(1, 2).reshape(BW, c, wh, ww)).view(BW, num_heads, -1, L)
    mask = None
    if Hp != H or Wp != W:
        valid = window_padding_mask(H, W, window, device=q.device)                 # (nW, L)
        mask = valid[None].expand(B, -1, -1).reshape(BW, 1, 1, L)
    out = F.scaled_dot_product_attention(qw, kw, vw, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    out = (out + pos.transpose(-1, -2)).transpose(1, 2).reshape(BW, L, c)
    return window_reverse(out, window, Hp, Wp)[:, :H, :W]


class CrossShapedWindowAttention(nn.Module):
    """CSWin's cross-shaped window self-attention with LePE on an NHWC map of any size.

    Half of the heads (and channels) attend inside vertical stripes (full height, ``stripe_width`` columns),
    the other half inside horizontal ones; ``full=True`` (CSWin's last stage) is one branch attending over
    the whole map.
    """

    def __init__(self, dim: int, num_heads: int, stripe_width: int, full: bool = False, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, attn_drop: float = 0.0):
        super().__init__()
        branches = 1 if full else 2
        if num_heads % branches or dim % num_heads:
            raise ConfigError(f'CSWin attention needs dim ({dim}) divisible by num_heads ({num_heads}) and an '
                              'even num_heads outside the last stage')
        self.num_heads = num_heads
        self.stripe_width = stripe_width
        self.full = full
        self.scale = qk_scale if qk_scale is not None else (dim // num_heads) ** -0.5
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.lepe = nn.ModuleList([
            nn.Conv2d(dim // branches, dim // branches, 3, padding=1, groups=dim // branches)
            for _ in range(branches)])
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        dropout = self.attn_drop if self.training else 0.0
        if self.full:
            out = stripe_attention(q, k, v, (H, W), self.num_heads, self.lepe[0], self.scale, dropout)
        else:
            h, sw, heads = C // 2, self.stripe_width, self.num_heads // 2
            out = torch.cat([
                stripe_attention(q[..., :h], k[..., :h], v[..., :h], (H, sw), heads, self.lepe[0], self.scale,
                                 dropout),
                stripe_attention(q[..., h:], k[..., h:], v[..., h:], (sw, W), heads, self.lepe[1], self.scale,
                                 dropout)], dim=-1)
        return self.proj(out)


class BOATCSWinBlock(nn.Module):
    """CSWin block + optional FSLA between the cross-shaped attention and the MLP (NHWC in and out)."""

    def __init__(self, dim: int, num_heads: int, stripe_width: int, full: bool = False, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_path: float = 0.0, fsla: Optional[dict] = None,
                 norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = CrossShapedWindowAttention(dim, num_heads, stripe_width, full=full, qkv_bias=qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if fsla is not None:
            self.norm_fsla = norm_layer(dim)
            self.fsla = FeatureSpaceLocalAttention(dim, num_heads, qkv_bias=qkv_bias, **fsla)
        else:
            self.fsla = None
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        if self.fsla is not None:
            x = x + self.drop_path(self.fsla(self.norm_fsla(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ConvStem(nn.Module):
    """CSWin's stem: conv 7x7 stride 4 (input zero-padded to a multiple of 4) + LayerNorm, NCHW -> NHWC."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, dim, kernel_size=7, stride=4, padding=2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        x = F.pad(x, (0, (-W) % 4, 0, (-H) % 4))
        return self.norm(self.conv(x).permute(0, 2, 3, 1))


class ConvMerging(nn.Module):
    """CSWin's merge block: conv 3x3 stride 2 (ceil(H / 2) x ceil(W / 2) out) + LayerNorm, NHWC."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, out_dim, kernel_size=3, stride=2, padding=1)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class CSWinStage(nn.Module):
    def __init__(self, dim: int, out_dim: int, depth: int, num_heads: int, stripe_width: int, full: bool,
                 downsample: bool, drop_path: Sequence[float], fsla: Optional[dict], fsla_on: str,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, with_cp: bool = False):
        super().__init__()
        self.downsample = ConvMerging(dim, out_dim) if downsample else nn.Identity()
        self.blocks = nn.ModuleList([
            BOATCSWinBlock(out_dim, num_heads, stripe_width, full=full, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                           drop_path=drop_path[i],
                           fsla=fsla if fsla_on == 'all' or (fsla_on == 'even' and i % 2 == 0) else None)
            for i in range(depth)])
        self.with_cp = with_cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        for block in self.blocks:
            x = cp.checkpoint(block, x, use_reentrant=False) if self.with_cp and x.requires_grad else block(x)
        return x


@MODELS.register_module()
class BOATCSWin(DenseBackbone):
    """BOAT-CSWin-T/S/B: CSWin's pyramid (cross-shaped windows, conv stem / merging) with FSLA.

    Args:
        arch: 'tiny' | 'small' | 'base' (CSWin's settings) or dict(embed_dim=, depths=, num_heads=).
        stripe_widths: per stage; the last stage attends over the whole map (CSWin's ``last_stage``).
        layout: 'paper' (FSLA in every block) | 'pytorch-boat' (even blocks, q.k unscaled; see module doc).
        leaf_size / overlap / cluster_iters / cluster_dim: as for :class:`BOATSwin`.
        drop_path_rate: stochastic depth (CSWin det/seg: T 0.2, S 0.3, B 0.4 in vitdense's configs).
    """
    arch_settings = {
        'tiny': dict(embed_dim=64, depths=(1, 2, 21, 1), num_heads=(2, 4, 8, 16)),
        'small': dict(embed_dim=64, depths=(2, 4, 32, 2), num_heads=(2, 4, 8, 16)),
        'base': dict(embed_dim=96, depths=(2, 4, 32, 2), num_heads=(4, 8, 16, 32)),
    }

    def __init__(self, arch='tiny', in_channels: int = 3, stripe_widths: Sequence[int] = (1, 2, 7, 7),
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.2,
                 layout: str = 'paper', leaf_size: int = 49, overlap: int = 20, cluster_iters: int = 2,
                 cluster_dim: Optional[int] = None,
                 out_indices=(0, 1, 2, 3), frozen_stages: int = -1, with_cp: bool = False, init_cfg=None):
        super().__init__(out_indices, frozen_stages, in_channels, init_cfg)
        settings = self.resolve_arch(arch)
        embed_dim, depths, num_heads = settings['embed_dim'], settings['depths'], settings['num_heads']
        if len(stripe_widths) != self.num_stages:
            raise ConfigError(f'stripe_widths needs one width per stage ({self.num_stages}), got {stripe_widths}')
        self.layout = layout
        fsla = dict(leaf_size=leaf_size, overlap=overlap, cluster_iters=cluster_iters, cluster_dim=cluster_dim)
        fsla.update(fsla_settings(layout, 'cswin'))
        self.depths = tuple(depths)
        self.stem = ConvStem(in_channels, embed_dim)
        dims = [embed_dim * 2 ** i for i in range(self.num_stages)]
        self.num_features = dims
        dpr = stochastic_depth(drop_path_rate, depths)
        self.stages = nn.ModuleList([
            CSWinStage(dims[max(i - 1, 0)], dims[i], depths[i], num_heads[i], stripe_widths[i],
                       full=i == self.num_stages - 1, downsample=i > 0, drop_path=dpr[i], fsla=fsla,
                       fsla_on='all' if layout == 'paper' else 'even', mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                       with_cp=with_cp)
            for i in range(self.num_stages)])
        self.out_norms = self.build_out_norms(nn.LayerNorm, dims)
        self.apply(init_transformer_weights)
        self._freeze()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return self.nhwc_stage_pyramid(x, self.stem, self.stages)

    def frozen_modules(self) -> List[nn.Module]:
        return self.stem_and_stages(self.stem, self.stages)

    def get_layer_depth(self, param_name: str, mode: str = 'layer_wise') -> Tuple[int, int]:
        """Per block (layer_wise) or per stage (stage_wise), as Swin's; see
        :meth:`DenseBackbone.stage_layer_depth`."""
        return self.stage_layer_depth(param_name, mode, 'stem', 'stages')


# ---------------------------------------------------------------------------------------------------------
# ImageNet classifiers
# ---------------------------------------------------------------------------------------------------------
@MODELS.register_module()
class BOATClassifier(BaseModule):
    """ImageNet classifier on a BOAT backbone: last-stage map -> its output norm (the classification
    model's final LayerNorm) -> global average pool -> linear head.

    ``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` loads a pytorch-boat (or vitdense) classification
    checkpoint, head and final norm included. BOAT-Swin classifiers default to ``always_shift=False`` (no
    shift on maps that fit one window), the classification recipe the public weights were trained with.
    """

    def __init__(self, backbone: dict, num_classes: int = 1000, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        backbone = dict(backbone, out_indices=(3,))
        if str(backbone.get('type', '')).split('.')[-1] == 'BOATSwin':
            backbone.setdefault('always_shift', False)
        self.backbone = MODELS.build(backbone)
        self.num_classes = num_classes
        self.head = nn.Linear(self.backbone.num_features[-1], num_classes)
        trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[-1].mean(dim=(2, 3)))

    def init_weights(self):
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from vitdense.checkpoint.boat import load_classifier
            load_classifier(self, cfg['checkpoint'])
            self._is_init = True
            return
        super().init_weights()
