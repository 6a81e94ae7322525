"""Mixed precision for detectors and segmentors: the network under autocast, the arithmetic on boxes in float32.

Autocasting a whole mmdet / mmseg ``model(...)`` call also autocasts the glue between the network's parts: anchor
and box coding, proposal NMS, RoI sampling, mask pasting and the losses. In bfloat16 (8 significant bits) a box
coordinate of 500 px is only resolved to 2 px, and mmcv's CPU NMS refuses bfloat16 outright. So vitdense autocasts
the parts of the model that hold its weights (backbone, neck and each head's ``forward``), each part's floating
outputs come back as float32, and everything between them runs as in a float32 model (vitdense's choice; mmdet
2.x drew the same line with ``force_fp32`` on its heads' post-processing).
"""
import functools
from contextlib import contextmanager
from typing import Iterator, List

import torch
import torch.nn as nn

from .wrappers import unwrap_model

# Attribute names of the weight-holding parts of mmdet / mmseg / mmpretrain models whose ``forward`` is pure
# network: tensors in, tensors out. A RoI head is not one of them (it samples and pools RoIs); its box and mask
# heads are.
NETWORK_PARTS = ('backbone', 'neck', 'rpn_head', 'bbox_head', 'mask_head', 'semantic_head', 'mask_iou_head',
                 'decode_head', 'auxiliary_head', 'panoptic_head', 'head')


def network_parts(model: nn.Module) -> List[nn.Module]:
    """The modules :func:`autocast_network` autocasts: in a model with a ``backbone`` (an mmdet / mmseg /
    mmpretrain model, also inside a DDP / FSDP wrapper), its outermost submodules named in ``NETWORK_PARTS`` (each
    member of a ``ModuleList`` such as a Cascade RoI head's per-stage heads); any other model (a bare backbone)
    whole."""
    model = unwrap_model(model)  # DDP / FSDP: the parts are the wrapped model's
    if not isinstance(getattr(model, 'backbone', None), nn.Module):
        return [model]
    parts: List[nn.Module] = []
    taken: List[str] = []
    for name, module in model.named_modules():
        if not name or name.rsplit('.', 1)[-1] not in NETWORK_PARTS:
            continue
        if any(name.startswith(prefix + '.') for prefix in taken):
            continue
        taken.append(name)
        if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
            parts.extend(module.children() if isinstance(module, nn.ModuleList) else module.values())
        else:
            parts.append(module)
    return parts


def _to_float32(value, dtype: torch.dtype):
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype == dtype else value
    if isinstance(value, (list, tuple)):
        converted = [_to_float32(item, dtype) for item in value]
        return type(value)(*converted) if hasattr(value, '_fields') else type(value)(converted)
    if isinstance(value, dict):
        return type(value)((key, _to_float32(item, dtype)) for key, item in value.items())
    return value


@contextmanager
def autocast_network(model: nn.Module, dtype: torch.dtype = torch.bfloat16,
                     device_type: str = None) -> Iterator[None]:
    """Within this context every ``forward`` of ``network_parts(model)`` runs under ``torch.autocast(dtype)`` and
    returns its ``dtype`` outputs as float32; the model is left as it was when the context ends.

    The parts' ``forward`` is wrapped, not hooked: mmseg's decode heads compute their losses through
    ``self.forward(...)``, which skips module hooks."""
    if device_type is None:
        device_type = next((p.device.type for p in model.parameters()), 'cpu')

    def autocast_forward(forward):
        @functools.wraps(forward)
        def run(*args, **kwargs):
            with torch.autocast(device_type=device_type, dtype=dtype):
                output = forward(*args, **kwargs)
            return _to_float32(output, dtype)
        return run

    parts = network_parts(model)
    shadowed = [part.__dict__.get('forward') for part in parts]  # an instance-level forward, if any
    try:
        for part in parts:
            part.forward = autocast_forward(part.forward)
        yield
    finally:
        for part, own in zip(parts, shadowed):
            if own is None:
                part.__dict__.pop('forward', None)
            else:
                part.forward = own
