"""Resizing position tables when a checkpoint meets another window or input size (for more than one family)."""
from typing import Dict, Tuple

import torch
from timm.layers import resample_abs_pos_embed
from timm.layers.pos_embed_rel import resize_rel_pos_bias_table

from .adaptation import CheckpointAdaptation


def resize_rel_pos_tables(adaptation: CheckpointAdaptation, model: torch.nn.Module) -> None:
    """Bicubic-resize every ``*.relative_position_bias_table`` of ``adaptation`` to the window of the module of
    ``model`` it loads into (Swin-style tables, one bias per relative offset)."""
    model_sd = model.state_dict()
    resized = {}
    for key, value in list(adaptation.state_dict.items()):
        if not key.endswith('relative_position_bias_table') or key not in model_sd:
            continue
        target = model_sd[key].shape
        if value.shape == target:
            continue
        window = model.get_submodule(key.rsplit('.', 1)[0]).window_size
        old = round(((value.shape[0] ** 0.5) + 1) / 2)
        adaptation.resize(key, resize_rel_pos_bias_table(value.contiguous(), new_window_size=tuple(window),
                                                         new_bias_shape=tuple(target)))
        resized.setdefault((old, tuple(window)), []).append(key)
    for (old, new), keys in resized.items():
        adaptation.note(f'{len(keys)} relative_position_bias_tables interpolated from window {old} to {new}')


def resize_abs_pos_embed(pos_embed: torch.Tensor, new_size: Tuple[int, int], num_prefix_tokens: int,
                         old_size: Tuple[int, int] = None) -> torch.Tensor:
    """(1, prefix + h * w, C) -> (1, prefix + H * W, C), bicubic on the grid, prefix tokens kept."""
    return resample_abs_pos_embed(pos_embed, new_size=list(new_size), old_size=old_size,
                                  num_prefix_tokens=num_prefix_tokens, verbose=False)
