"""Helpers shared by the backbone families: windows, shifted-window masks, padding, token/map reshapes.

Everything here is batched tensor code (no Python loops over tokens, windows or heads) so the backbones
stay ``torch.compile``-friendly.
"""
from typing import Tuple

import torch
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, multiple: Tuple[int, int]) -> torch.Tensor:
    """Zero-pad an NHWC map at the bottom/right so H and W are multiples of ``multiple``."""
    H, W = x.shape[1:3]
    pad_h = (multiple[0] - H % multiple[0]) % multiple[0]
    pad_w = (multiple[1] - W % multiple[1]) % multiple[1]
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    return x


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


def nhwc_to_nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2).contiguous()


def nchw_to_nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)
