"""Checkpoints for :class:`vitdense.models.backbones.TimmBackbone`: by name, or by order and shape.

Three layouts, tried in this order:

1. vitdense's own (``trunk.*`` keys, e.g. the backbone part of a vitdense classifier): used as is.
2. timm's (the full classification model's ``state_dict``): each trunk parameter is looked up under its
   timm name. timm's feature wrappers rename a little (``FeatureListNet`` flattens ``stages.0`` into
   ``stages_0``; ``FeatureGetterNet`` nests the model under ``model.``), which is undone here. The
   classifier (and anything past the last returned level) has no place in the trunk and is dropped.
3. any other layout of the same network (e.g. lukemelas' EfficientNet-PyTorch names ``_conv_stem`` /
   ``_blocks.0._depthwise_conv`` for timm's ``conv_stem`` / ``blocks.0.0.conv_dw``): the trunk's tensors are
   matched to the checkpoint's in order, every shape must agree, and the checkpoint's tail (the head) is
   dropped. The first disagreement is an error naming both tensors. Matching by order is only as right as
   the two orders are alike, so the notes say it happened: check a prediction after converting.
"""
import re
from typing import List, Tuple

import torch

from .convert import register_converter
from .io import CheckpointError

TRUNK = 'trunk.'


def timm_names(trunk_key: str) -> List[str]:
    """Names a trunk parameter may have in a timm classification model's state dict."""
    names = [trunk_key, re.sub(r'^([^.]+?)_(\d+)\.', r'\1.\2.', trunk_key)]
    if trunk_key.startswith('model.'):
        names.append(trunk_key[len('model.'):])
    return names


def match_by_order(ckpt: List[Tuple[str, torch.Tensor]], own: List[Tuple[str, torch.Size]]):
    """Pair ``own`` (trunk keys, shapes) with the first ``len(own)`` checkpoint tensors, shapes equal.
    BatchNorm's ``num_batches_tracked`` counters are left out when only one side has them."""
    first_error = None
    for skip_counters in (False, True):
        a = [(k, v) for k, v in ckpt if not (skip_counters and k.endswith('num_batches_tracked'))]
        b = [(k, s) for k, s in own if not (skip_counters and k.endswith('num_batches_tracked'))]
        bad = next((i for i, ((_, v), (_, s)) in enumerate(zip(a, b)) if tuple(v.shape) != tuple(s)), None)
        if bad is None and len(a) >= len(b):
            return [(mk, ck, v) for (mk, _), (ck, v) in zip(b, a)]
        if first_error is None:
            if bad is None:
                first_error = (f'the checkpoint has {len(a)} tensors, fewer than the {len(b)} the backbone needs')
            else:
                first_error = (f'tensor #{bad} differs: backbone {b[bad][0]} {tuple(b[bad][1])} vs checkpoint '
                               f'{a[bad][0]} {tuple(a[bad][1].shape)}')
    raise CheckpointError(f'the checkpoint matches the timm trunk neither by name nor by order and shape '
                          f'({first_error}); is it a checkpoint of this model_name?')


@register_converter('TimmBackbone')
def convert_timm_backbone(sd, model, notes):
    own = [(k, v.shape) for k, v in model.state_dict().items() if k.startswith(TRUNK)]
    if any(k.startswith(TRUNK) for k in sd):
        return sd
    by_name = {}
    for key, _ in own:
        found = next((n for n in timm_names(key[len(TRUNK):]) if n in sd), None)
        if found is not None:
            by_name[key] = found
    if len(by_name) >= 0.5 * len(own):
        used = set(by_name.values())
        notes.append(f"timm layout: {len(by_name)} tensors matched by name under '{TRUNK}'")
        return {**{k: v for k, v in sd.items() if k not in used}, **{k: sd[n] for k, n in by_name.items()}}
    pairs = match_by_order(list(sd.items()), own)
    used = {ck for _, ck, _ in pairs}
    tail = [k for k in sd if k not in used]
    notes.append(f"foreign layout: {len(pairs)} tensors matched by order and shape ({pairs[0][1]} -> "
                 f"{pairs[0][0]}, ..., {pairs[-1][1]} -> {pairs[-1][0]}); verify with a prediction")
    if tail:
        notes.append(f'{len(tail)} checkpoint tensors left unmatched (first: {tail[0]}; the classifier and '
                     'layers past the last returned level) are dropped')
    return {**{k: sd[k] for k in tail}, **{mk: v for mk, _, v in pairs}}
