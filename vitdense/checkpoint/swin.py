"""Swin checkpoints: timm, microsoft/Swin-Transformer (official) and mmdet/mmseg layouts -> vitdense."""
import re

import torch

from .convert import register_converter
from .interpolate import resize_rel_pos_tables

_MMDET_RENAMES = (
    (r'^patch_embed\.projection\.', 'patch_embed.proj.'),
    (r'^stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.', r'layers.\1.blocks.\2.attn.'),
    (r'^stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.0\.0\.', r'layers.\1.blocks.\2.mlp.fc1.'),
    (r'^stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.1\.', r'layers.\1.blocks.\2.mlp.fc2.'),
    (r'^stages\.(\d+)\.blocks\.(\d+)\.', r'layers.\1.blocks.\2.'),
    (r'^norm(\d)\.', r'out_norms.\1.'),
)


def _unfold_to_concat_order(v: torch.Tensor) -> torch.Tensor:
    """mmdet's PatchMerging (nn.Unfold) orders merged channels (c, kh, kw); timm / official concat
    [x(0,0), x(1,0), x(0,1), x(1,1)] orders them (kw, kh, c)."""
    C = v.shape[-1] // 4
    lead = v.shape[:-1]
    return v.reshape(*lead, C, 2, 2).transpose(-1, -3).reshape(*lead, 4 * C)


def mmdet_to_timm(sd):
    out = {}
    for k, v in sd.items():
        m = re.match(r'^stages\.(\d+)\.downsample\.(.*)$', k)
        if m:  # mmdet merges at the end of stage i; timm at the start of stage i + 1
            k = f'layers.{int(m.group(1)) + 1}.downsample.{m.group(2)}'
            if k.endswith('reduction.weight') or k.endswith('norm.weight') or k.endswith('norm.bias'):
                v = _unfold_to_concat_order(v)
        for pattern, repl in _MMDET_RENAMES:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return out


def official_to_timm(sd):
    return {re.sub(r'^layers\.(\d+)\.downsample', lambda m: f'layers.{int(m.group(1)) + 1}.downsample', k): v
            for k, v in sd.items()}


@register_converter('SwinTransformer')
def convert_swin(sd, model, notes):
    if any(k.startswith('stages.') and '.w_msa.' in k for k in sd):
        sd = mmdet_to_timm(sd)
        notes.append('mmdet/mmseg Swin layout remapped')
    elif 'layers.0.downsample.reduction.weight' in sd:
        sd = official_to_timm(sd)
        notes.append('official microsoft/Swin-Transformer layout remapped (patch merging moved to the next stage)')
    sd = {k: v for k, v in sd.items()
          if not k.endswith(('relative_position_index', 'attn_mask'))
          and not k.startswith(('head.', 'norm.'))}  # classifier and its final norm
    resize_rel_pos_tables(sd, model, notes)
    return sd
