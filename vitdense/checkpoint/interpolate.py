"""Resizing position tables when a checkpoint meets another window or input size."""
from typing import Dict, Tuple

import torch
from timm.layers import resample_abs_pos_embed
from timm.layers.pos_embed_rel import resize_rel_pos_bias_table

from .io import CheckpointError


def resize_rel_pos_tables(sd: Dict[str, torch.Tensor], model: torch.nn.Module, notes: list) -> None:
    """Bicubic-resize every ``*.relative_position_bias_table`` to the window of the module it loads into."""
    model_sd = model.state_dict()
    resized = {}
    for key, value in list(sd.items()):
        if not key.endswith('relative_position_bias_table') or key not in model_sd:
            continue
        target = model_sd[key].shape
        if value.shape == target:
            continue
        window = model.get_submodule(key.rsplit('.', 1)[0]).window_size
        old = round(((value.shape[0] ** 0.5) + 1) / 2)
        sd[key] = resize_rel_pos_bias_table(value.contiguous(), new_window_size=tuple(window),
                                            new_bias_shape=tuple(target))
        resized.setdefault((old, tuple(window)), []).append(key)
    for (old, new), keys in resized.items():
        notes.append(f'{len(keys)} relative_position_bias_tables interpolated from window {old} to {new}')


DECOMPOSED_REL_POS = ('attn.rel_pos_h', 'attn.rel_pos_w')


def resize_decomposed_rel_pos_tables(sd: Dict[str, torch.Tensor], model: torch.nn.Module, notes: list) -> None:
    """Fit every decomposed relative position table (``*.attn.rel_pos_h`` / ``rel_pos_w``, ViTDet / SAM / timm
    ``samvit_*``) to the model's: linearly resampled along the distance axis (ViTDet's / SAM's rule, the one
    the model applies at run time) when the checkpoint was made for another window or grid.

    Raises :class:`CheckpointError` when the checkpoint has tables and the model none (vitdense's choice: the
    network would silently lose the position bias it was trained with), and for tables that are not
    (2 * size - 1, head_dim).
    """
    from vitdense.models.backbones.vit import resize_rel_pos_table

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
        sd[key] = resize_rel_pos_table(table.float(), length).to(table.dtype)
        resized.setdefault(((table.shape[0] + 1) // 2, (length + 1) // 2), []).append(key)
    for (old, new), moved in resized.items():
        notes.append(f'{len(moved)} decomposed relative position tables interpolated from extent {old} to {new}')


def resize_abs_pos_embed(pos_embed: torch.Tensor, new_size: Tuple[int, int], num_prefix_tokens: int,
                         old_size: Tuple[int, int] = None) -> torch.Tensor:
    """(1, prefix + h * w, C) -> (1, prefix + H * W, C), bicubic on the grid, prefix tokens kept."""
    return resample_abs_pos_embed(pos_embed, new_size=list(new_size), old_size=old_size,
                                  num_prefix_tokens=num_prefix_tokens, verbose=False)
