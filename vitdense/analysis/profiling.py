"""Where one training iteration's time goes: data, each model part's forward and backward, optimiser, hooks.

Used by ``tools/profile_iteration.py``. Forward times come from module forward pre/post hooks on the parts
(backbone, neck, heads, RoI extractors). Backward times are attributed node by node: every autograd node carries
the sequence number of the forward operation that created it, so the numbers handed out while a part's forward
ran name the nodes that part owns, and hooks on each node of the loss's graph time that node's backward.
Cutting the backward pass at the moments a part's outputs receive their gradient does not work: autograd runs a
Swin stage's backward as soon as the FPN's lateral convolution of that stage is done, interleaving the backbone
with the rest of the neck.
"""
import bisect
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Dict, List, Tuple

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


def _next_sequence_nr() -> int:
    """The sequence number the next autograd node created on this thread will get."""
    with torch.enable_grad():
        probe = torch.empty(0, requires_grad=True) * 1
    return probe.grad_fn._sequence_nr() + 1


def _graph_nodes(root) -> List:
    """Every autograd node reachable from ``root`` (a loss's ``grad_fn``)."""
    nodes, seen, stack = [], set(), [root]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        nodes.append(node)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return nodes


OTHER = 'losses and targets'
ACCUMULATE = 'gradient accumulation'
ENGINE = 'autograd engine (between nodes)'


class PartTimer:
    """Forward seconds per part, and the backward pass's seconds per part, accumulated over iterations.

    Inside :meth:`track`, each part's forward calls are timed (nested parts are timed on their own, and also
    inside their parent: ``roi_head.*`` parts are not attached to a ``roi_head`` total, so they do not overlap),
    and the range of autograd sequence numbers each call hands out is kept. Call :meth:`start_backward` with the
    loss just before ``loss.backward()`` and :meth:`end_backward` after it: each node's backward is charged to the
    part whose forward created it; nodes created outside every part (targets, sampling, losses) to
    ``'losses and targets'``, the parameters' AccumulateGrad nodes to ``'gradient accumulation'``, and what the
    engine spends between nodes (plus these hooks' own cost) to ``'autograd engine (between nodes)'``.
    """

    def __init__(self, parts: Dict[str, nn.Module], clock=time.perf_counter):
        self.parts = parts
        self.clock = clock  # time.process_time: this process's CPU seconds, steadier on a shared machine
        self.forward_s: Dict[str, float] = defaultdict(float)
        self.backward_s: Dict[str, float] = defaultdict(float)
        self.calls: Dict[str, int] = defaultdict(int)
        self._ranges: List[Tuple[int, int, str]] = []  # (first, end) sequence numbers of one forward call
        self._starts: Dict[str, List[Tuple[float, int]]] = defaultdict(list)
        self._node_handles: List = []
        self._pass_s: Dict[str, float] = defaultdict(float)  # this backward pass's node seconds per part
        self._backward_start = 0.0

    def _pre(self, name):
        def hook(module, args):
            self._starts[name].append((self.clock(), _next_sequence_nr()))
        return hook

    def _post(self, name):
        def hook(module, args, output):
            end_seq = _next_sequence_nr()
            start, first_seq = self._starts[name].pop()
            self.forward_s[name] += self.clock() - start
            self.calls[name] += 1
            self._ranges.append((first_seq, end_seq, name))
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

    def start_backward(self, loss: torch.Tensor) -> None:
        """Hook every node of ``loss``'s graph; call just before ``loss.backward()``."""
        self._node_handles = []
        self._pass_s = defaultdict(float)
        owners = {}
        ranges = sorted(self._ranges)
        firsts = [r[0] for r in ranges]
        for node in _graph_nodes(loss.grad_fn):
            if type(node).__name__ == 'AccumulateGrad':
                name = ACCUMULATE
            else:
                seq = node._sequence_nr()
                if seq not in owners:  # innermost range holding seq: scan back from the last range starting <= seq
                    owners[seq] = OTHER
                    for first, end, part in reversed(ranges[:bisect.bisect_right(firsts, seq)]):
                        if seq < end:
                            owners[seq] = part
                            break
                name = owners[seq]
            self._hook_node(node, name)
        self._backward_start = self.clock()

    def _hook_node(self, node, name: str) -> None:
        began = []

        def pre(grad_outputs):
            began.append(self.clock())

        def post(grad_inputs, grad_outputs):
            self._pass_s[name] += self.clock() - began.pop()

        self._node_handles += [node.register_prehook(pre), node.register_hook(post)]

    def end_backward(self) -> None:
        """Remove the node hooks; what the nodes did not account for is the engine's."""
        total = self.clock() - self._backward_start
        for handle in self._node_handles:
            handle.remove()
        self._node_handles = []
        self._ranges.clear()
        for name, seconds in self._pass_s.items():
            self.backward_s[name] += seconds
        self.backward_s[ENGINE] += max(0.0, total - sum(self._pass_s.values()))


def split_table(rows: List[Tuple[str, float]], total: float, unit_scale: float = 1.0) -> str:
    """Aligned ``name  seconds  share`` lines."""
    width = max(len(name) for name, _ in rows) + 2
    lines = [f'{name:<{width}}{seconds * unit_scale:>9.3f} s {100 * seconds / total:>6.1f}%'
             for name, seconds in rows]
    return '\n'.join(lines)
