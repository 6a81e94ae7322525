"""Parameters and FLOPs of a config's model or backbone, counted on the meta device.

FLOPs convention. As in the Swin / ConvNeXt papers, fvcore and mmengine.analysis (mmcv's counter before it),
one multiply-accumulate counts as one FLOP ("Swin-T: 4.5 GFLOPs at 224" is 4.5 G multiply-adds). Every number
this module returns as ``flops`` follows that convention; :class:`FlopCounter` converts torch's counter
(which counts 2 per multiply-add) once, at the end.

What is counted. :class:`torch.utils.flop_counter.FlopCounterMode` sees every aten op at dispatch, so attention
written as ``torch.matmul`` / ``bmm`` / ``einsum`` (they all reach ``mm`` / ``bmm``) and convolutions are counted
wherever they come from. Its table misses some ops, added here in :data:`EXTRA_FORMULAS`: the CPU fused attention
kernel (``F.scaled_dot_product_attention`` on CPU), the oneDNN / cuDNN recurrent kernels (``nn.LSTM`` /
``nn.GRU``: every gate's input and hidden matmul, per token and direction; on the meta device the whole RNN call
is answered by shape, :class:`_ShapeOnlyRNN`), ``torch.cdist``, ``mv`` and oneDNN's linear (vitdense's float32 CPU
linears); sorts / top-k (clustering) count one FLOP per comparison (n log2 n per sorted row). Element-wise ops,
norms, softmax, pooling and interpolation are not counted (memory-bound; fvcore adds a few FLOPs per element for
norms and upsampling; mmengine.analysis, fvcore's port that mmdet's and mmseg's get_flops use, has no formula for
SDPA or LSTMs). With this convention the ConvNeXt detectors and UperNets land within 0.4% of their published
FLOPs, Swin's 0.5-2.5% below theirs: vitdense's Swin projects only the map's tokens, where the published counts
include the window padding (docs/model_zoo.md).

Meta device. Counting only needs shapes, so models are built and run on the ``meta`` device: a 1188 GFLOP
UperNet at 512x2048 is counted in a few seconds on a CPU. Code that needs real values there (NMS, RoIAlign's
level mapping) is handled for two-stage detectors by :func:`detector_counting_patches`: the RPN returns a
fixed ``test_cfg.rpn.max_per_img`` proposals per image (the most the RoI head ever sees, so the count is
deterministic) and the RoI extractors return zeros of their output shape (bilinear sampling: no
multiply-adds); a Cascade RoI head counts its mask heads on 100 RoIs, like Mask R-CNN's
(:func:`_cascade_counting_forward`). mmcv's multi-scale deformable attention (ViT-Adapter) is answered by shape,
its sampling counted by formula (:func:`deformable_attention_counting_patch`). A model that still fails on ``meta``
is counted again with real CPU tensors.

Detectors are counted like mmdet's ``get_flops``: ``model._forward`` (backbone, neck, RPN head, RoI heads
on the proposals); segmentors like mmseg's: ``model._forward`` (backbone and decode head, whole image; the
training-only auxiliary head is not run); classifiers (mmpretrain) backbone, neck and head.
"""
import contextlib
import importlib
import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from vitdense.runtime.config import build_model

aten = torch.ops.aten

# Input sizes the papers report FLOPs at (H, W): COCO detection at 1280x800, ADE20K UperNet at 512x2048,
# ImageNet classification at 224x224.
STANDARD_SHAPES = {'mmdet': (800, 1280), 'mmseg': (512, 2048), 'mmpretrain': (224, 224)}


# ---- FLOP formulas for the ops torch's counter does not know (torch convention: 2 per multiply-add) ----
def _numel(shape) -> int:
    return math.prod(shape) if shape else 1


def _attention_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    """q @ k^T and attn @ v, any number of leading (batch, head) dims; k / v heads may be fewer (GQA)."""
    *lead, s_q, d_q = query_shape
    s_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * _numel(lead) * s_q * s_k * (d_q + d_v)


def _rnn_layer_flops(input_shape, *weights_and_more, **kwargs) -> int:
    """oneDNN's per-layer / per-direction kernel: input (.., features); weights w_ih (G*H, in), w_hh (G*H, H)."""
    tokens = _numel(input_shape) // input_shape[-1]
    w_ih, w_hh = weights_and_more[0], weights_and_more[1]
    return 2 * tokens * (_numel(w_ih) + _numel(w_hh))


def _cudnn_rnn_flops(input_shape, weights, *args, **kwargs) -> int:
    """cuDNN's whole-RNN kernel: every 2-D weight (w_ih, w_hh, w_hr of every layer and direction) is applied
    once per token; a packed input is (tokens, features)."""
    tokens = _numel(input_shape) // input_shape[-1]
    return 2 * tokens * sum(_numel(w) for w in weights if len(w) == 2)


def _cdist_flops(x1_shape, x2_shape, *args, **kwargs) -> int:
    *lead, p, m = x1_shape
    return 2 * _numel(lead) * p * x2_shape[-2] * m


def _mv_flops(a_shape, b_shape, *args, **kwargs) -> int:
    return 2 * _numel(a_shape)


def _addmv_flops(self_shape, a_shape, b_shape, *args, **kwargs) -> int:
    return 2 * _numel(a_shape)


def _onednn_linear_flops(x_shape, weight_shape, *args, **kwargs) -> int:
    return 2 * _numel(x_shape[:-1]) * weight_shape[0] * weight_shape[1]


def _comparisons(n: int, rows: int, k: int = None) -> int:
    """n log2 n comparisons to sort a row (n log2 k to select its top k); 2 per comparison (torch convention),
    so one comparison reads as one FLOP in the reported multiply-add convention."""
    if n < 2:
        return 0
    return 2 * rows * n * math.ceil(math.log2(k if k and k > 1 else n))


def _sort_flops(self_shape, *args, **kwargs) -> int:
    dim = args[0] if args and isinstance(args[0], int) else kwargs.get('dim', -1)
    if not self_shape:
        return 0
    n = self_shape[dim]
    return _comparisons(n, _numel(self_shape) // max(n, 1))


def _topk_flops(self_shape, k, dim=-1, *args, **kwargs) -> int:
    if not self_shape:
        return 0
    n = self_shape[dim]
    return _comparisons(n, _numel(self_shape) // max(n, 1), k=max(int(k), 2))


EXTRA_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops,
    aten._scaled_dot_product_fused_attention_overrideable: _attention_flops,
    aten.mkldnn_rnn_layer: _rnn_layer_flops,
    aten._cudnn_rnn: _cudnn_rnn_flops,
    aten._cdist_forward: _cdist_flops,
    aten._euclidean_dist: _cdist_flops,
    aten.mv: _mv_flops,
    aten.addmv: _addmv_flops,
    torch.ops.mkldnn._linear_pointwise: _onednn_linear_flops,  # vitdense.models.cpu_layers on a CPU
    aten.sort: _sort_flops,
    aten.topk: _topk_flops,
}


class _ShapeOnlyRNN(torch.overrides.TorchFunctionMode):
    """On meta inputs, answer ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` (``torch._VF.lstm`` ...) with outputs of the
    right shapes and their gate matmuls counted directly. Otherwise the meta device runs the RNN's
    per-time-step decomposition, 10+ dispatched ops per step: minutes for Sequencer's 512-long scans."""

    RNNS = {'lstm': 2, 'gru': 1, 'rnn_tanh': 1, 'rnn_relu': 1}  # how many state tensors each returns

    def __init__(self, record: Callable[[str, int], None]):
        super().__init__()
        self.record = record

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, '__name__', '')
        # the unpacked overload: (input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
        if name in self.RNNS and len(args) == 9 and isinstance(args[2], (list, tuple)) and args[0].is_meta:
            inputs, hx, params = args[0], args[1], args[2]
            states = list(hx) if isinstance(hx, (list, tuple)) else [hx]
            matrices = [w for w in params if w.dim() == 2]
            tokens = inputs.numel() // inputs.shape[-1]
            self.record(f'{name} (gates)', 2 * tokens * sum(w.numel() for w in matrices))
            directions = 2 if args[7] else 1
            hidden_out = matrices[1].shape[1]  # w_hh: (gates * hidden, hidden or proj size)
            output = inputs.new_empty(*inputs.shape[:-1], directions * hidden_out)
            return (output, *[torch.empty_like(h) for h in states[:self.RNNS[name]]])
        return func(*args, **kwargs)


class FlopCounter:
    """Context manager counting multiply-adds (see the module docstring) of everything run inside it.

    After exit: ``total`` (int), ``by_op`` {op name: FLOPs}, ``by_module`` {module path: FLOPs}, with module
    paths as torch's ModuleTracker names them (``ClassName.child.grandchild``).
    """

    def __init__(self):
        self._mode = FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)
        self._rnn = _ShapeOnlyRNN(self._record)
        self.total, self.by_op, self.by_module = 0, {}, {}

    def _record(self, op: str, flops: int) -> None:
        """Add FLOPs (torch convention) computed outside the dispatch mode, to every module running now."""
        for parent in set(self._mode.mod_tracker.parents):
            self._mode.flop_counts[parent][op] += flops

    def __enter__(self):
        self._mode.__enter__()
        self._rnn.__enter__()
        return self

    def __exit__(self, *exc):
        self._rnn.__exit__(*exc)
        self._mode.__exit__(*exc)
        counts = self._mode.get_flop_counts()
        self.by_op = {str(op).split('.')[-1]: n // 2 for op, n in counts.get('Global', {}).items()}
        self.total = sum(self.by_op.values())
        self.by_module = {name: sum(ops.values()) // 2 for name, ops in counts.items() if name != 'Global'}
        return False

    def module_table(self, depth: int = 2) -> List[Tuple[str, int]]:
        """(module path, FLOPs) for the modules at most ``depth`` levels below the root that ran (as modules:
        a child whose ``forward`` is called directly, e.g. mmdet's ``roi_head.forward``, is not listed)."""
        return [(name, n) for name, n in self.by_module.items() if name.count('.') <= depth and n]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _sample_cls(scope: str):
    module, name = {'mmdet': ('mmdet.structures', 'DetDataSample'),
                    'mmseg': ('mmseg.structures', 'SegDataSample'),
                    'mmpretrain': ('mmpretrain.structures', 'DataSample')}.get(
                        scope, ('mmengine.structures', 'BaseDataElement'))
    return getattr(importlib.import_module(module), name)


def synthetic_samples(scope: str, batch: int, shape: Tuple[int, int]) -> list:
    """Data samples carrying the image meta a model's forward reads, for an unpadded, unscaled H x W batch."""
    H, W = shape
    meta = dict(img_shape=(H, W), ori_shape=(H, W), pad_shape=(H, W), batch_input_shape=(H, W),
                scale_factor=(1.0, 1.0), padding_size=[0, 0, 0, 0], flip=False)
    cls = _sample_cls(scope)
    return [cls(metainfo=meta) for _ in range(batch)]


def model_input_shape(model: nn.Module, shape: Tuple[int, int]) -> Tuple[int, int]:
    """The size the model really sees: the data preprocessor pads detection batches to a multiple of 32."""
    divisor = int(getattr(getattr(model, 'data_preprocessor', None), 'pad_size_divisor', 1) or 1)
    return tuple(-(-s // divisor) * divisor for s in shape)


def _fixed_boxes(num: int, shape: Tuple[int, int], device, dtype) -> torch.Tensor:
    """``num`` valid boxes spread over an H x W image (their values matter only off the meta device)."""
    H, W = shape
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(num, 2, generator=g) * torch.tensor([W * 0.75, H * 0.75])
    wh = (torch.rand(num, 2, generator=g) * 0.2 + 0.05) * torch.tensor([W, H])
    return torch.cat([xy, xy + wh], dim=1).to(device=device, dtype=dtype)


def _cascade_counting_forward(roi_head: nn.Module) -> Callable:
    """A Cascade RoI head's ``forward`` as its published FLOPs were counted (mmdet 2's ``forward_dummy``): every
    stage's box head on all proposals, every stage's mask head on the first 100, the cap mmdet's Mask R-CNN
    ``forward`` applies too. mmdet 3's ``forward`` runs the three mask heads on all 1000 proposals, which would
    add about 1.4 TFLOPs that inference never spends (masks are predicted for the final 100 detections)."""
    from mmdet.structures.bbox import bbox2roi

    def forward(x, rpn_results_list, batch_data_samples):
        rois = bbox2roi([r.bboxes for r in rpn_results_list])
        outs = ()
        for stage in range(roi_head.num_stages):
            boxes = roi_head._bbox_forward(stage, x, rois)
            outs += (boxes['cls_score'], boxes['bbox_pred'])
        if roi_head.with_mask:
            outs += tuple(roi_head._mask_forward(stage, x, rois[:100])['mask_preds']
                          for stage in range(roi_head.num_stages))
        return outs
    return forward


@contextlib.contextmanager
def detector_counting_patches(model: nn.Module):
    """For two-stage detectors: fixed proposals from the RPN, shape-only RoI feature extraction (see above).

    Everything is restored on exit; models without an RPN + RoI head are left alone.
    """
    restore = []
    rpn, roi = getattr(model, 'rpn_head', None), getattr(model, 'roi_head', None)
    if rpn is not None and roi is not None:
        from mmengine.structures import InstanceData
        rpn_test_cfg = getattr(rpn, 'test_cfg', None) or {}
        num = int(rpn_test_cfg.get('max_per_img', 1000))

        def fixed_proposals(x, batch_data_samples, rescale=False):
            rpn(x)  # the RPN head's convolutions are counted; its NMS is replaced
            return [InstanceData(bboxes=_fixed_boxes(num, s.metainfo['img_shape'], x[0].device, x[0].dtype))
                    for s in batch_data_samples]

        restore.append((rpn, 'predict'))
        rpn.predict = fixed_proposals
        if hasattr(roi, 'num_stages') and hasattr(roi, '_refine_roi'):  # Cascade R-CNN
            restore.append((roi, 'forward'))
            roi.forward = _cascade_counting_forward(roi)
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    for module in model.modules():
        if isinstance(module, SingleRoIExtractor):
            def shape_only(feats, rois, roi_scale_factor=None, module=module):
                size = module.roi_layers[0].output_size
                return feats[0].new_zeros(rois.shape[0], module.out_channels, *size)
            restore.append((module, 'forward'))
            module.forward = shape_only
    try:
        yield
    finally:
        for obj, name in restore:
            del obj.__dict__[name]


@contextlib.contextmanager
def query_head_counting_patches(model: nn.Module, samples):
    """For query-based segmentation heads (Mask2Former): mmseg's tensor mode calls ``decode_head.forward(x)``
    while these heads also need the batch's samples (for the padded input shape), so hand them over."""
    head = getattr(model, 'decode_head', None)
    needs_samples = head is not None and 'batch_data_samples' in inspect.signature(head.forward).parameters
    if needs_samples:
        forward = head.forward
        head.forward = lambda x: forward(x, samples)
    try:
        yield
    finally:
        if needs_samples:
            del head.__dict__['forward']


@dataclass
class Complexity:
    params: int
    flops: int
    shape: Tuple[int, int]
    device: str                       # where FLOPs were counted: 'meta', or 'cpu' after a meta failure
    by_op: Dict[str, int] = field(default_factory=dict)
    by_module: List[Tuple[str, int]] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ''


def deformable_attention_counting_patch(counter: 'FlopCounter'):
    """On the meta device, mmcv's ``MultiScaleDeformableAttention`` (ViT-Adapter, Mask2Former's pixel decoder)
    answered by shape: its four linears run (and are counted), its sampling core is counted by formula, 5
    multiply-adds per sampled point and channel (a bilinear read of 4 values, then the attention weight). Its
    forward asserts on, and its CPU core splits by, values of the ``spatial_shapes`` tensor, which meta tensors do
    not have. Applies while counting only."""
    from unittest import mock
    try:
        from mmcv.ops import MultiScaleDeformableAttention
    except ImportError:
        return contextlib.nullcontext()

    def forward(self, query, key=None, value=None, identity=None, query_pos=None, key_padding_mask=None,
                reference_points=None, spatial_shapes=None, level_start_index=None, **kwargs):
        value = query if value is None else value
        identity = query if identity is None else identity
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query, value = query.transpose(0, 1), value.transpose(0, 1)
        batch, queries, _ = query.shape
        value = self.value_proj(value)
        self.sampling_offsets(query)
        self.attention_weights(query)
        channels = value.shape[-1] // self.num_heads
        sampled = batch * queries * self.num_heads * self.num_levels * self.num_points * channels
        counter._record('multi_scale_deformable_attn', 2 * 5 * sampled)
        output = self.output_proj(value.new_empty(batch, queries, value.shape[-1]))
        if not self.batch_first:
            output = output.transpose(0, 1)
        return self.dropout(output) + identity
    return mock.patch.object(MultiScaleDeformableAttention, 'forward', forward)


def _count_forward(model: nn.Module, scope: str, shape, backbone_only: bool, device: str) -> FlopCounter:
    """Run the model once under a :class:`FlopCounter`; on 'meta', with meta copies of all its parameters and
    buffers swapped in (``functional_call``)."""
    inputs = torch.zeros(1, 3, *shape, device=device)
    args, kwargs = (inputs,), {}
    if not backbone_only:
        args, kwargs = (inputs, synthetic_samples(scope, 1, shape)), dict(mode='tensor')
    if scope == 'mmdet' and not backbone_only:
        patches = detector_counting_patches(model)
    elif scope == 'mmseg' and not backbone_only:
        patches = query_head_counting_patches(model, kwargs and args[1])
    else:
        patches = contextlib.nullcontext()
    counter = FlopCounter()
    with torch.no_grad(), patches:
        if device == 'meta':
            state = {name: torch.empty_like(t, device='meta') for name, t in
                     [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]}
            with counter, deformable_attention_counting_patch(counter):
                torch.func.functional_call(model, state, args, kwargs, tie_weights=False)
        else:
            with counter:
                model(*args, **kwargs)
    return counter


def backbone_flops(backbone: nn.Module, shape: Tuple[int, int]) -> int:
    """Multiply-adds of one forward of a backbone on a 1 x 3 x H x W input, counted on the meta device."""
    return _count_forward(backbone, 'mmdet', tuple(shape), True, 'meta').total


def complexity(cfg, shape: Optional[Tuple[int, int]] = None, backbone_only: bool = False,
               depth: int = 2, flops: bool = True) -> Complexity:
    """Params and FLOPs (multiply-adds) of a config's model or backbone for a 1 x 3 x H x W input.

    ``shape`` defaults to the task's published size (:data:`STANDARD_SHAPES`). Counts on the meta device,
    falling back to real CPU tensors (slow for big inputs) if a module cannot run there.
    """
    scope = cfg.default_scope
    shape = tuple(shape or STANDARD_SHAPES.get(scope, (512, 512)))
    start = time.perf_counter()
    model = build_model(cfg, backbone_only, weights_on_meta=True)
    params = count_params(model)
    if not backbone_only:
        shape = model_input_shape(model, shape)
    if not flops:
        return Complexity(params, 0, shape, '', seconds=time.perf_counter() - start)
    note, device = '', 'meta'
    try:
        counter = _count_forward(model, scope, shape, backbone_only, 'meta')
    except Exception as err:  # a module that needs real values: count again on the CPU
        note = f'meta device failed ({type(err).__name__}: {str(err).splitlines()[0][:120]}); counted on CPU'
        device = 'cpu'
        model = build_model(cfg, backbone_only)
        counter = _count_forward(model, scope, shape, backbone_only, 'cpu')
    # order the breakdown as the model declares its modules (torch's tracker names the root by its class)
    order = {(type(model).__name__ + '.' + name).rstrip('.'): i for i, (name, _) in enumerate(model.named_modules())}
    table = sorted(counter.module_table(depth), key=lambda item: order.get(item[0], len(order)))
    return Complexity(params, counter.total, shape, device, counter.by_op, table,
                      time.perf_counter() - start, note)


def is_model_config(cfg) -> bool:
    """Configs with a buildable model (leaves), as opposed to partial bases."""
    model = cfg.get('model')
    return isinstance(model, dict) and 'type' in model and cfg.get('default_scope') in STANDARD_SHAPES
