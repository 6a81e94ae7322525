"""Swin Transformer (Liu et al., ICCV 2021, arXiv 2103.14030) as a dense-prediction backbone.

Parameter names follow timm's ``SwinTransformer`` (``patch_embed``, ``layers.i.downsample`` at the start of
stage i, ``layers.i.blocks.j.{norm1,attn,norm2,mlp}``), so timm state dicts load as they are; the official
microsoft/Swin-Transformer and mmdet layouts are remapped by :meth:`SwinTransformer.adapt_checkpoint`.

Two window semantics, chosen by ``always_shift``. They differ in a stage whose map is not larger than the
window along H or W (e.g. the 7 x 7 last stage of Swin-T at 224 x 224) and in the order of padding and shift
on a map that is not a multiple of the window; they coincide where every map is larger than the window and a
multiple of it (e.g. 448 x 448):

* ``always_shift=True`` (default; detection / segmentation, official Swin-Det / mmdet): every block zero-pads
  its map to a multiple of the window, shifted blocks always shift by half a window, and the shift mask is
  built for the padded map; the features equal mmdet's ``SwinTransformer`` for the same weights.
* ``always_shift=False`` (classification, timm / official Swin classifiers): along a dimension where the map
  fits in one window, the window shrinks to the map and shifted blocks do not shift; a map that is not a
  multiple of the window is shifted first and padded after, as timm does; the features equal timm's
  ``SwinTransformer`` built for that input size. When the window shrinks, vitdense reads the bias of each
  relative offset from the full window's table as it is (a choice of vitdense's; timm and the official code
  build a smaller table, resampled from the checkpoint's when it is loaded); at 224 x 224 no window shrinks
  and no map is padded.

Either way any input H x W works.
"""
import re
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from timm.layers import DropPath, PatchEmbed, to_2tuple, trunc_normal_
from timm.layers.pos_embed_rel import gen_relative_position_index
from timm.models.swin_transformer import PatchMerging

from vitdense.checkpoint.adaptation import CheckpointAdaptation
from vitdense.checkpoint.interpolate import resize_rel_pos_tables
from vitdense.errors import ConfigError
from vitdense.registry import MODELS
from ..cpu_layers import Linear, Mlp, use_fast_cpu_layers
from ..layers import init_transformer_weights, window_partition
from .base import DenseBackbone, stochastic_depth


def shifted_window_mask(H: int, W: int, window: Tuple[int, int], shift: Tuple[int, int],
                        device=None, dtype=torch.float32) -> torch.Tensor:
    """Additive attention mask (nW, N, N) for shifted windows on an (already padded) H x W map.

    After a cyclic shift by ``shift`` the map holds up to 3 x 3 regions that were not neighbours; tokens of
    different regions must not attend to each other inside one window (value -100, as in Swin).
    """
    def region_ids(size, win, sh, device):
        idx = torch.arange(size, device=device)
        return (idx >= size - win).long() + (idx >= size - sh).long()

    rows = region_ids(H, window[0], shift[0], device)
    cols = region_ids(W, window[1], shift[1], device)
    regions = (rows[:, None] * 3 + cols[None, :]).to(dtype)                 # H x W region id
    windows = window_partition(regions[None, :, :, None], window).squeeze(-1)  # nW x N
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


def cropped_relative_position_index(window: Tuple[int, int], full_window: Tuple[int, int],
                                    device=None) -> torch.Tensor:
    """(N, N) indices into a ``full_window`` relative-position table for the token pairs of a smaller
    ``window`` (N = wh * ww): the same offsets, looked up in the larger table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window[0], device=device),
                                        torch.arange(window[1], device=device), indexing='ij')).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]                              # 2, N, N
    return (rel[0] + full_window[0] - 1) * (2 * full_window[1] - 1) + rel[1] + full_window[1] - 1


class WindowLayout(NamedTuple):
    """Where each token of the padded, shifted, window-partitioned map comes from (see :func:`window_layout`)."""
    source: torch.Tensor   # (Hp * Wp,) map token shown at each window position (0 at padding positions)
    target: torch.Tensor   # (H * W,) window position of each map token
    padding: torch.Tensor  # (P,) window positions that hold padding
    padded: Tuple[int, int]


def window_layout(H: int, W: int, window: Tuple[int, int], shift: Tuple[int, int], pad_first: bool,
                  device=None) -> WindowLayout:
    """The token order of an H x W map zero-padded to whole windows, cyclically shifted by ``-shift`` and split
    into windows, as index tensors: one gather then does what padding, rolling and :func:`window_partition`
    do with three copies, and one gather undoes it.

    ``pad_first``: pad, then shift the padded map (mmdet); else shift the map, then pad it (timm).
    """
    Hp, Wp = -(-H // window[0]) * window[0], -(-W // window[1]) * window[1]
    i, j = torch.arange(Hp, device=device), torch.arange(Wp, device=device)
    if pad_first:  # row / column of the padded map each position shows (>= H / W: padding)
        rows, cols = (i + shift[0]) % Hp, (j + shift[1]) % Wp
    else:
        rows = torch.where(i < H, (i + shift[0]) % H, Hp)
        cols = torch.where(j < W, (j + shift[1]) % W, Wp)
    real = (rows[:, None] < H) & (cols[None, :] < W)
    source = torch.where(real, rows[:, None] * W + cols[None, :], 0)
    source = window_partition(source[None, :, :, None], window).reshape(-1)
    real = window_partition(real[None, :, :, None], window).reshape(-1)
    # sorted by the map token they show, padding last (in window order): the first H * W positions are where
    # map tokens 0, 1, ... went; no boolean indexing, so the sizes are static for torch.compile
    order = torch.argsort(torch.where(real, source, H * W + torch.arange(Hp * Wp, device=device)), stable=True)
    return WindowLayout(source, order[:H * W], order[H * W:], (Hp, Wp))


class _TokenGather(torch.autograd.Function):
    """y = x[:, index] where the index is one-to-one on the tokens that matter; the gradient is the gather back
    by ``back_index`` (zero at ``back_zero``): no scatter-add."""

    @staticmethod
    def forward(ctx, x, index, back_index, back_zero):
        ctx.save_for_backward(back_index, back_zero)
        return x.index_select(1, index)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        back_index, back_zero = ctx.saved_tensors
        grad = grad.index_select(1, back_index)
        if back_zero.numel():
            grad[:, back_zero] = 0
        return grad, None, None, None


def tokens_to_windows(x: torch.Tensor, layout: WindowLayout, fill: Optional[torch.Tensor]) -> torch.Tensor:
    """(B, H, W, D) map -> (B, Hp * Wp, D): the tokens of its windows in ``layout``'s order (window by window),
    padding positions set to ``fill`` (D,) (zero if None)."""
    B, D = x.shape[0], x.shape[-1]
    empty = x.new_empty(0, dtype=torch.long)
    windows = _TokenGather.apply(x.reshape(B, -1, D), layout.source, layout.target, empty)
    if layout.padding.numel():
        windows[:, layout.padding] = 0 if fill is None else fill.to(windows.dtype)
    return windows


def windows_to_tokens(windows: torch.Tensor, layout: WindowLayout, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`tokens_to_windows`: (B, Hp * Wp, D) -> (B, H, W, D); padding positions are dropped."""
    B, D = windows.shape[0], windows.shape[-1]
    tokens = _TokenGather.apply(windows, layout.target, layout.source, layout.padding)
    return tokens.view(B, H, W, D)


def check_always_shift(owner: str, always_shift) -> None:
    if not isinstance(always_shift, bool):
        raise ConfigError(f'{owner}: always_shift must be True (detection / segmentation: mmdet\'s windows) or '
                          f'False (classification: timm\'s windows), got {always_shift!r}')


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative-position bias.

    On GPUs through SDPA. On a CPU as two batched matmuls around a softmax (timm's default for Swin too): for
    windows of ~49 tokens SDPA's CPU kernel is slower than that, and with a bias that needs a gradient (training)
    SDPA falls back to a path that computes bfloat16 inputs in float32; Swin-T's window attention, forward +
    backward, one thread: 45 ms through SDPA vs 31 ms (float32), 36 vs 15 ms (bf16 autocast).
    """

    def __init__(self, dim: int, num_heads: int, window_size: Tuple[int, int], qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size[0] - 1) * (2 * window_size[1] - 1), num_heads))
        self.register_buffer('relative_position_index', gen_relative_position_index(window_size),
                             persistent=False)
        self.qkv = Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_position_bias(self, window: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """(heads, N, N) bias of a window of ``window`` tokens (default: the full window); a smaller window
        reads its offsets from the full window's table."""
        if window is None or tuple(window) == tuple(self.window_size):
            index = self.relative_position_index
        else:
            index = cropped_relative_position_index(window, self.window_size, self.relative_position_index.device)
        N = index.shape[0]
        bias = self.relative_position_bias_table[index.view(-1)]
        return bias.view(N, N, -1).permute(2, 0, 1)  # heads, N, N

    @staticmethod
    def use_sdpa(x: torch.Tensor) -> bool:
        return x.device.type != 'cpu'

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None,
                window: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """x: (B * nW, N, C) for windows of ``window`` tokens (default: the full window); mask: (nW, N, N)
        additive or None."""
        return self.proj_drop(self.proj(self.attend(self.qkv(x), mask, window)))

    def attend(self, qkv: torch.Tensor, mask: Optional[torch.Tensor] = None,
               window: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """The attention between the projections: windows of q, k, v (B * nW, N, 3C) -> (B * nW, N, C)."""
        BW, N, C3 = qkv.shape
        C = C3 // 3
        q, k, v = qkv.view(BW, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias(window).unsqueeze(0)  # 1, heads, N, N
        dropout = self.attn_drop if self.training else 0.0
        if not self.use_sdpa(qkv):
            attn = (q * self.scale) @ k.transpose(-2, -1) + bias  # BW, heads, N, N
            if mask is not None:  # per window, the same for every image: broadcast, not copied
                nW = mask.shape[0]
                attn = (attn.view(BW // nW, nW, self.num_heads, N, N) + mask[None, :, None]).view(BW, -1, N, N)
            attn = attn.softmax(dim=-1)
            x = (F.dropout(attn, dropout) if dropout else attn) @ v
        else:
            if mask is not None:
                nW = mask.shape[0]
                bias = (bias.unsqueeze(0) + mask[None, :, None]).expand(BW // nW, -1, -1, -1, -1)
                bias = bias.reshape(BW, self.num_heads, N, N)
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=dropout)
        return x.transpose(1, 2).reshape(BW, N, C)


class SwinBlock(nn.Module):
    """(Shifted-)window attention block on an NHWC map of any size.

    ``always_shift``: True keeps the window and the shift on every map (mmdet); False shrinks the window to
    the map and drops the shift along a dimension where the map fits in one window (timm), see the module doc.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, shifted: bool = False,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path: float = 0.0,
                 norm_layer=nn.LayerNorm, always_shift: bool = True):
        super().__init__()
        self.window_size = to_2tuple(window_size)
        self.shift_size = tuple(w // 2 for w in self.window_size) if shifted else (0, 0)
        self.always_shift = always_shift
        self.norm1 = norm_layer(dim)
        self.attn = WindowAttention(dim, num_heads, self.window_size, qkv_bias=qkv_bias)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    @property
    def shifted(self) -> bool:
        return any(self.shift_size)

    def window_and_shift(self, H: int, W: int) -> Tuple[Tuple[int, int], Tuple[int, int]]:
        """The window and shift this block uses on an H x W map."""
        if self.always_shift:
            return self.window_size, self.shift_size
        window = tuple(min(r, w) for r, w in zip((H, W), self.window_size))
        shift = tuple(0 if r <= w else s for r, w, s in zip((H, W), window, self.shift_size))
        return window, shift

    def window_attention(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Window attention of a normed (B, H, W, C) map. The projections run on the map's own tokens: a
        padding token is zero, so its q, k, v are the qkv bias (filled in) and its output is cropped away;
        padding, shift and windows are one gather each way (:func:`window_layout`)."""
        B, H, W, C = x.shape
        window, shift = self.window_and_shift(H, W)
        # mmdet pads the map, then shifts the padded map; timm shifts the map, then pads it (the same when
        # the map is a multiple of the window)
        layout = window_layout(H, W, window, shift, pad_first=self.always_shift, device=x.device)
        qkv = tokens_to_windows(self.attn.qkv(x), layout, self.attn.qkv.bias)
        N = window[0] * window[1]
        x = self.attn.attend(qkv.view(-1, N, qkv.shape[-1]), mask if any(shift) else None, window)
        x = windows_to_tokens(x.view(B, -1, C), layout, H, W)
        return self.attn.proj_drop(self.attn.proj(x))

    def attention_mask(self, H: int, W: int, x: torch.Tensor) -> Optional[torch.Tensor]:
        window, shift = self.window_and_shift(H, W)
        if not any(shift):
            return None
        Hp = -(-H // window[0]) * window[0]
        Wp = -(-W // window[1]) * window[1]
        return shifted_window_mask(Hp, Wp, window, shift, device=x.device, dtype=x.dtype)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x + self.drop_path1(self.window_attention(self.norm1(x), mask))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class SwinStage(nn.Module):
    """2x2 patch merging (or Identity in the first stage), then blocks alternating regular and shifted windows
    (any blocks with :class:`SwinBlock`'s ``forward(x, mask)`` and ``attention_mask``)."""

    def __init__(self, downsample: nn.Module, blocks: Sequence[nn.Module], with_cp: bool = False):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.ModuleList(blocks)
        self.with_cp = with_cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        H, W = x.shape[1:3]
        # one mask per stage: every shifted block of a stage sees the same padded size
        mask = next((b.attention_mask(H, W, x) for b in self.blocks if b.shifted), None)
        for block in self.blocks:
            if self.with_cp and x.requires_grad:
                x = cp.checkpoint(block, x, mask, use_reentrant=False)
            else:
                x = block(x, mask)
        return x


@MODELS.register_module()
class SwinTransformer(DenseBackbone):
    """Swin-T/S/B/L pyramid backbone.

    Args:
        arch: 'tiny' | 'small' | 'base' | 'large' (or a dict with embed_dim, depths, num_heads).
        window_size: attention window; checkpoints made for another window are interpolated at load.
        always_shift: True (default): mmdet's detection windows (always pad to the window and shift by half
            of it); False: timm's classification windows (no shift, window shrunk to the map, along a
            dimension where the map fits in one window: the 7 x 7 last stage at 224). See the module doc.
        drop_path_rate: stochastic depth, linear over all blocks.
        out_indices / frozen_stages / with_cp / init_cfg: see :class:`DenseBackbone`.
    """
    arch_settings = {
        'tiny': dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
        'small': dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
        'base': dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
        'large': dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
    }

    def __init__(self, arch='tiny', in_channels: int = 3, patch_size: int = 4, window_size: int = 7,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.1,
                 always_shift: bool = True, out_indices=(0, 1, 2, 3), frozen_stages: int = -1,
                 with_cp: bool = False, init_cfg=None):
        super().__init__(out_indices, frozen_stages, in_channels, init_cfg)
        check_always_shift(type(self).__name__, always_shift)
        self.always_shift = always_shift
        settings = self.resolve_arch(arch)
        embed_dim, depths, num_heads = settings['embed_dim'], settings['depths'], settings['num_heads']
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
            downsample = PatchMerging(dims[i - 1], dims[i], norm_layer=nn.LayerNorm) if i > 0 else nn.Identity()
            blocks = [self.build_block(i, j, dim=dims[i], num_heads=num_heads[i], window_size=window_size,
                                       shifted=j % 2 == 1, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                                       drop_path=dpr[i][j])
                      for j in range(depths[i])]
            stages.append(SwinStage(downsample, blocks, with_cp=with_cp))
        self.layers = nn.ModuleList(stages)
        self.out_norms = self.build_out_norms(nn.LayerNorm, dims)
        self.apply(init_transformer_weights)
        use_fast_cpu_layers(self)
        self._freeze()

    def build_block(self, stage: int, index: int, **block_args) -> nn.Module:
        """Block ``index`` of stage ``stage`` from :class:`SwinBlock`'s arguments (dim, num_heads, window_size,
        shifted, mlp_ratio, qkv_bias, drop_path). A family that puts other blocks into Swin's pyramid overrides
        this (e.g. :class:`vitdense.models.backbones.BOATSwin`)."""
        return SwinBlock(**block_args, always_shift=self.always_shift)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        # patch_embed: B, H/4, W/4, C (zero-padded to a multiple of the patch)
        return self.nhwc_stage_pyramid(x, self.patch_embed, self.layers)

    def frozen_modules(self) -> List[nn.Module]:
        return self.stem_and_stages(self.patch_embed, self.layers)

    def param_depth(self, param_name: str, mode: str) -> Tuple[int, int]:
        """Per block (layer_wise) or per stage (stage_wise), see :meth:`DenseBackbone.stage_layer_depth`;
        patch merging belongs to the stage it opens."""
        return self.stage_layer_depth(param_name, mode, 'patch_embed', 'layers')

    # ---- checkpoints ---------------------------------------------------------------------------------------
    def adapt_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> CheckpointAdaptation:
        """timm's names load as they are; the official microsoft/Swin-Transformer release (patch merging at the
        end of a stage) and mmdet / mmseg Swin (``stages.i``, ``w_msa``, ``ffn``, PatchMerging's Unfold channel
        order) are remapped; the classifier and the buffers every block rebuilds are dropped; relative-position
        tables are resized to this window."""
        adaptation = super().adapt_checkpoint(state_dict)
        keys = adaptation.state_dict
        if any(k.startswith('stages.') and '.w_msa.' in k for k in keys):
            for key in [k for k in keys if MMDET_UNFOLD_ORDERED.match(k)]:
                keys[key] = unfold_to_concat_order(keys[key])
            adaptation.rename(MMDET_SWIN_RENAMES, note='mmdet/mmseg Swin layout remapped')
        elif 'layers.0.downsample.reduction.weight' in keys:
            adaptation.rename(OFFICIAL_SWIN_RENAMES, note='official microsoft/Swin-Transformer layout remapped '
                                                          '(patch merging moved to the next stage)')
        adaptation.drop_suffix(('relative_position_index', 'attn_mask'), 'buffer the backbone rebuilds')
        adaptation.drop_prefix(('head.', 'norm.'), 'classifier head and its final norm')
        resize_rel_pos_tables(adaptation, self)
        return adaptation


# ---- checkpoint layouts ---------------------------------------------------------------------------------------
# official: patch merging at the end of stage i; timm / vitdense: at the start of stage i + 1
OFFICIAL_SWIN_RENAMES = ((r'^layers\.(\d+)\.downsample\.', lambda m: f'layers.{int(m.group(1)) + 1}.downsample.'),)
MMDET_SWIN_RENAMES = (
    (r'^stages\.(\d+)\.downsample\.', lambda m: f'layers.{int(m.group(1)) + 1}.downsample.'),
    (r'^patch_embed\.projection\.', 'patch_embed.proj.'),
    (r'^stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.', r'layers.\1.blocks.\2.attn.'),
    (r'^stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.0\.0\.', r'layers.\1.blocks.\2.mlp.fc1.'),
    (r'^stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.1\.', r'layers.\1.blocks.\2.mlp.fc2.'),
    (r'^stages\.(\d+)\.blocks\.(\d+)\.', r'layers.\1.blocks.\2.'),
    (r'^norm(\d)\.', r'out_norms.\1.'),
)
MMDET_UNFOLD_ORDERED = re.compile(r'^stages\.\d+\.downsample\.(reduction\.weight|norm\.weight|norm\.bias)$')


def unfold_to_concat_order(v: torch.Tensor) -> torch.Tensor:
    """mmdet's PatchMerging (nn.Unfold) orders merged channels (c, kh, kw); timm / official concat
    [x(0,0), x(1,0), x(0,1), x(1,1)] orders them (kw, kh, c)."""
    C = v.shape[-1] // 4
    lead = v.shape[:-1]
    return v.reshape(*lead, C, 2, 2).transpose(-1, -3).reshape(*lead, 4 * C)
