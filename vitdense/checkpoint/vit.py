"""Plain ViT and CeiT checkpoints -> vitdense.

ViT (:class:`~vitdense.models.backbones.VisionTransformer`): timm ``vit_*`` / ``deit_*`` state dicts and the
official DeiT release (``{'model': ...}``) share timm's names, so the converter only

* drops the classifier and what only it uses (``head``, ``head_dist``, final ``norm`` / ``fc_norm``,
  ``pre_logits``) and DeiT's distillation token;
* resamples ``pos_embed`` (bicubic, timm's ``resample_abs_pos_embed``) from the checkpoint's grid (e.g. 14 x 14
  at 224) to the backbone's ``img_size`` grid, keeping the class-token position, or dropping it (and
  ``cls_token``) for windowed backbones that run without a class token.

timm's ``samvit_*`` (SAM's / ViTDet's ViT, ``VisionTransformerSAM``) state dicts load through the same path:
their block names are the same, the (1, H, W, C) ``pos_embed`` is flattened, SAM's ``neck`` goes with the
classifier, and the decomposed relative position tables ``blocks.i.attn.rel_pos_h`` / ``rel_pos_w`` are resampled
to the backbone's windows and grid (:func:`~vitdense.checkpoint.interpolate.resize_decomposed_rel_pos_tables`;
the backbone needs ``use_rel_pos=True``). The official SAM release (``image_encoder.*``, ``mlp.lin1`` / ``lin2``)
is first mapped by timm's samvit filter, which drops the prompt encoder and mask decoder. A checkpoint without
tables (DeiT, MAE) leaves them at zero, as ViTDet does.

CeiT (:class:`~vitdense.models.backbones.CeiT` / ``CeiTClassifier``): coeusguo/ceit names are renamed to
vitdense's; the dense backbone drops the LCA, its layer embedding, the final norm and the head. coeusguo/ceit
weights are refused (one line) by a model built with ``leff_final_act=True``: its LeFFs add a GELU the
official ones do not have, so it would not compute the network the weights were trained as.
"""
import math
import re

import torch
from timm.models.vision_transformer_sam import checkpoint_filter_fn as samvit_filter

from .convert import register_converter
from .interpolate import resize_abs_pos_embed, resize_decomposed_rel_pos_tables
from .io import CheckpointError

CLASSIFIER_ONLY = ('head.', 'head_dist.', 'norm.', 'fc_norm.', 'pre_logits.')
CLASSIFIER_OR_SAM_NECK = CLASSIFIER_ONLY + ('neck.',)  # samvit's neck feeds SAM's mask decoder, not a backbone
PREFIX_TOKENS = ('cls_token', 'dist_token')  # in the order timm / DeiT put them before the patches

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
CEIT_CLASSIFIER_ONLY = ('lca.', 'pos_layer_embed', 'norm.', 'head.')


def _is_square(n: int) -> bool:
    return n >= 0 and math.isqrt(n) ** 2 == n


def adapt_pos_embed(sd, model, notes) -> None:
    """Fit ``sd['pos_embed']`` (and the prefix tokens) to ``model``: its prefix count and its grid."""
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
        sd.pop('dist_token')
        prefix_pos = prefix_pos[:, :1]
        notes.append('DeiT distillation token and its position dropped')
    want_prefix = model.num_prefix_tokens
    if want_prefix == 0:
        if 'cls_token' in sd:
            sd.pop('cls_token')
            notes.append('class token and its position dropped (the backbone runs without one)')
        prefix_pos = prefix_pos[:, :0]
    elif prefix_pos.shape[1] == 0:
        prefix_pos = pos.new_zeros(1, 1, pos.shape[-1])
        notes.append('the checkpoint has no class-token position; it starts at zero')
    if grid != own_grid:
        patch_pos = resize_abs_pos_embed(patch_pos, own_grid, num_prefix_tokens=0, old_size=grid)
        notes.append(f'pos_embed interpolated from {grid[0]}x{grid[1]} to {own_grid[0]}x{own_grid[1]}')
    sd['pos_embed'] = torch.cat([prefix_pos, patch_pos], dim=1)


def flatten_nhwc_pos_embed(sd, model, notes) -> None:
    """timm samvit's (1, H, W, C) ``pos_embed`` -> (1, H * W, C); a non-square grid is resampled to the
    model's here, where its shape is still known."""
    pos = sd.get('pos_embed')
    if pos is None or pos.dim() != 4:
        return
    if pos.shape[0] != 1:
        raise CheckpointError(f'pos_embed has shape {tuple(pos.shape)}; expected (1, H, W, channels)')
    grid = tuple(pos.shape[1:3])
    pos = pos.reshape(1, grid[0] * grid[1], pos.shape[-1])
    if grid[0] != grid[1] and grid != tuple(model.pos_grid):
        pos = resize_abs_pos_embed(pos, model.pos_grid, num_prefix_tokens=0, old_size=grid)
        notes.append(f'pos_embed interpolated from {grid[0]}x{grid[1]} to {model.pos_grid[0]}x{model.pos_grid[1]}')
    sd['pos_embed'] = pos


def drop_classifier(sd, prefixes, notes):
    """``sd`` without the keys under ``prefixes`` (a classifier's head / final norm), noting what went."""
    dropped = sorted({k.split('.')[0] for k in sd if k.startswith(prefixes)})
    if dropped:
        notes.append(f"classifier parts dropped: {', '.join(dropped)}")
    return {k: v for k, v in sd.items() if not k.startswith(prefixes)}


@register_converter('VisionTransformer')
def convert_vit(sd, model, notes):
    if any(k.startswith('i2t.') or '.leff.' in k for k in sd):
        raise CheckpointError('this is a CeiT checkpoint (i2t / leff keys); load it into vitdense.CeiT')
    if 'image_encoder.patch_embed.proj.weight' in sd:
        sd = samvit_filter(sd, model)
        notes.append("official SAM layout: the image encoder taken, its prompt encoder / mask decoder dropped")
    sd = drop_classifier(sd, CLASSIFIER_OR_SAM_NECK, notes)
    flatten_nhwc_pos_embed(sd, model, notes)
    adapt_pos_embed(sd, model, notes)
    resize_decomposed_rel_pos_tables(sd, model, notes)
    if 'pos_embed' not in sd and any(k.endswith('attn.rel_pos_h') for k in sd):
        # samvit_*_224 learned without an absolute position embedding: zero computes that network
        sd['pos_embed'] = torch.zeros_like(model.pos_embed)
        notes.append('the checkpoint has no absolute position embedding (relative positions only); it starts '
                     'at zero')
    if getattr(model, 'use_rel_pos', False) and not any(k.endswith('attn.rel_pos_h') for k in sd):
        notes.append('the checkpoint has no relative position tables; they start at zero (ViTDet from MAE)')
    return sd


def ceit_official_to_vitdense(sd):
    out = {}
    for k, v in sd.items():
        for pattern, repl in CEIT_OFFICIAL_RENAMES:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return out


@register_converter('CeiT', 'CeiTClassifier')
def convert_ceit(sd, model, notes):
    if any(k.startswith('i2t.') for k in sd):
        if any(getattr(m, 'final_act', False) for m in model.modules()):
            raise CheckpointError(
                f'coeusguo/ceit weights were trained without a GELU after the LeFF\'s last BatchNorm, but this '
                f'{type(model).__name__} has leff_final_act=True; set leff_final_act=False (the default) to load them')
        sd = ceit_official_to_vitdense(sd)
        notes.append('coeusguo/ceit layout remapped')
    if type(model).__name__ == 'CeiT':
        sd = drop_classifier(sd, CEIT_CLASSIFIER_ONLY, notes)
    adapt_pos_embed(sd, model, notes)
    return sd
