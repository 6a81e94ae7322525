"""Helpers that two or more backbone families share: the transformer initialisation, bottom / right zero padding
to a multiple, windows and the key mask of windows that reach into padding, NHWC -> NCHW.

A helper used by one family lives in that family's file. Everything here is batched tensor code (no Python
loops over tokens, windows or heads) so the backbones stay ``torch.compile``-friendly.
"""
import math
from typing import Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import to_2tuple, trunc_normal_


def init_transformer_weights(m: nn.Module) -> None:
    """The ViT / Swin initialisation (``module.apply``): linears truncated normal (std 0.02) with zero bias,
    LayerNorms one / zero."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def pad_to_multiple(x: torch.Tensor, multiple: Union[int, Tuple[int, int]],
                    channels_last: bool = False) -> torch.Tensor:
    """Zero-pad a map at the bottom / right so that H and W are multiples of ``multiple`` (an int, or (mh, mw)).

    ``x``: (..., H, W), or (N, H, W, C) with ``channels_last``. Returns ``x`` itself when it fits already.
    """
    mh, mw = to_2tuple(multiple)
    H, W = x.shape[-3:-1] if channels_last else x.shape[-2:]
    pad_h, pad_w = (-H) % mh, (-W) % mw
    if not (pad_h or pad_w):
        return x
    return F.pad(x, (0, 0, 0, pad_w, 0, pad_h) if channels_last else (0, pad_w, 0, pad_h))


def window_partition(x: torch.Tensor, window: Tuple[int, int]) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of the window -> (B * nW, wh * ww, C)."""
    B, H, W, C = x.shape
    wh, ww = window
    x = x.view(B, H // wh, wh, W // ww, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, C)


def window_reverse(windows: torch.Tensor, window: Tuple[int, int], H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, wh * ww, C) -> (B, H, W, C)."""
    wh, ww = window
    C = windows.shape[-1]
    x = windows.view(-1, H // wh, W // ww, wh, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, H, W, C)


def nhwc_to_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2).contiguous()


def window_padding_mask(H: int, W: int, window: Tuple[int, int], device=None) -> torch.Tensor:
    """Boolean key mask (nW, wh * ww) for an H x W map zero-padded to whole windows: True on real tokens.

    Windowed attention that pads internally passes it (broadcast over batch, heads and queries) so padded
    positions are never attended to: a window's output then does not depend on how much padding it got.
    """
    Hp, Wp = -(-H // window[0]) * window[0], -(-W // window[1]) * window[1]
    rows = torch.arange(Hp, device=device) < H
    cols = torch.arange(Wp, device=device) < W
    valid = (rows[:, None] & cols[None, :]).to(torch.uint8)
    return window_partition(valid[None, :, :, None], window).squeeze(-1).bool()


def resample_to_stride(x: torch.Tensor, src_stride: float, dst_stride: float, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinearly resample an NCHW map from one stride to another, cell centres aligned, to exactly ``size``.

    Cell i of a stride-s map covers pixels [s * i, s * (i + 1)), the convention RoIAlign and FPN assume, so
    the map is resampled by exactly ``src_stride / dst_stride`` (not by the ratio of the two sizes, which
    would drift by up to a cell on odd sizes). Output cells past the source's first / last cell centre take
    its edge value (the source is edge-replicated first), and the result is cropped to ``size``. Works for
    non-integer ratios (stride 7 -> 8, 14 -> 16).
    """
    scale = src_stride / dst_stride
    # a source too short for the output grid gets the cells it reaches, plus one against float rounding
    pad_h, pad_w = (math.ceil(n / scale) + 1 - have if math.floor(have * scale) < n else 0
                    for n, have in zip(size, x.shape[-2:]))
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode='replicate')
    if scale != 1:
        x = F.interpolate(x, scale_factor=scale, mode='bilinear', align_corners=False,
                          recompute_scale_factor=False)
    return x[..., :size[0], :size[1]]
