"""Where one training iteration's time goes: data, each model part's forward and backward, optimiser, hooks.

Used by ``tools/profile_iteration.py``. Forward times come from module forward pre/post hooks on the parts
(backbone, neck, heads, RoI extractors). Backward times come from gradient hooks on the same parts' outputs:
a part's outputs have their full gradient once every later consumer has run its backward, so the moments these
gradients complete cut the single-threaded autograd pass into consecutive segments, one per part (autograd runs
the most recently created nodes first, i.e. the parts in reverse forward order).
"""
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Dict, Iterator, List, Tuple

import torch
import torch.nn as nn

# the parts of mmdet / mmseg models worth a line, by attribute path
PART_NAMES = ('backbone', 'neck', 'rpn_head', 'roi_head.bbox_roi_extractor', 'roi_head.bbox_head',
              'roi_head.mask_roi_extractor', 'roi_head.mask_head', 'bbox_head', 'decode_head', 'auxiliary_head',
              'panoptic_head')


def model_parts(model: nn.Module) -> Dict[str, nn.Module]:
    """The parts of ``model`` named in PART_NAMES that it has (a cascade's per-stage heads count as one part)."""
    parts = {}
    for path in PART_NAMES:
        obj = model
        for attr in path.split('.'):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, nn.Module):
            parts[path] = obj
    return parts


def _tensors(value) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


class PartTimer:
    """Forward seconds per part and the backward pass cut into per-part segments, accumulated over iterations.

    Inside :meth:`track`, each part's forward calls are timed (nested parts are timed on their own, and also
    inside their parent: ``roi_head.*`` parts are not attached to a ``roi_head`` total, so they do not overlap);
    every output tensor that needs a gradient gets a hook that records when its gradient arrives.
    Call :meth:`start_backward` just before ``loss.backward()`` and :meth:`end_backward` after it.
    """

    def __init__(self, parts: Dict[str, nn.Module], clock=time.perf_counter):
        self.parts = parts
        self.clock = clock  # time.process_time: this process's CPU seconds, steadier on a shared machine
        self.forward_s: Dict[str, float] = defaultdict(float)
        self.backward_s: Dict[str, float] = defaultdict(float)
        self.calls: Dict[str, int] = defaultdict(int)
        self._pending: Dict[str, int] = {}
        self._grad_done: Dict[str, float] = {}
        self._starts: Dict[str, List[float]] = defaultdict(list)
        self._backward_start = 0.0

    def _pre(self, name):
        def hook(module, args):
            self._starts[name].append(self.clock())
        return hook

    def _post(self, name):
        def hook(module, args, output):
            self.forward_s[name] += self.clock() - self._starts[name].pop()
            self.calls[name] += 1
            for tensor in _tensors(output):
                if tensor.requires_grad:
                    self._pending[name] = self._pending.get(name, 0) + 1
                    tensor.register_hook(self._grad_hook(name))
        return hook

    def _grad_hook(self, name):
        def hook(grad):
            self._grad_done[name] = self.clock()  # the last one wins: all of the part's outputs done
        return hook

    @contextmanager
    def track(self):
        handles = []
        for name, module in self.parts.items():
            handles.append(module.register_forward_pre_hook(self._pre(name)))
            handles.append(module.register_forward_hook(self._post(name)))
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def start_backward(self) -> None:
        self._grad_done.clear()
        self._backward_start = self.clock()

    def end_backward(self) -> None:
        end = self.clock()
        # segment k runs from the moment part k's outputs got their gradient to the next such moment: that is
        # part k's own backward (the losses' backward comes first, before any part's outputs are complete)
        marks = sorted((t, name) for name, t in self._grad_done.items())
        previous, label = self._backward_start, 'losses and targets'
        for t, name in marks:
            self.backward_s[label] += t - previous
            previous, label = t, name
        self.backward_s[label] += end - previous
        self._pending.clear()


def split_table(rows: List[Tuple[str, float]], total: float, unit_scale: float = 1.0) -> str:
    """Aligned ``name  seconds  share`` lines."""
    width = max(len(name) for name, _ in rows) + 2
    lines = [f'{name:<{width}}{seconds * unit_scale:>9.3f} s {100 * seconds / total:>6.1f}%'
             for name, seconds in rows]
    return '\n'.join(lines)
