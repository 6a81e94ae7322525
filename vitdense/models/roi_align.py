"""RoIAlign as one sparse matrix product: mmcv's sampling, every CPU thread, forward and backward.

mmcv's CPU ``RoIAlign`` loops over RoIs, channels and sampling points in one thread, and its backward scatters
each sample's four bilinear weights one channel at a time; on a Mask R-CNN training step it is the largest single
cost after the backbone. The op is linear in the feature map: every output bin is a weighted sum of feature
pixels. Here the weights are built once per call as a sparse matrix ``S`` (rows: RoI bins, columns: pixels of
the whole batch), then

    output = S @ features        (features as a (B*H*W, C) matrix)
    grad_features = S^T @ grad   (the same weights, transposed)

both as sparse-dense products that torch runs on all threads, each non-zero touching C contiguous floats.
The weights are mmcv's (``mmcv/ops/csrc/pytorch/cpu/roi_align.cpp``): the ``aligned`` half-pixel offset, the
``sampling_ratio`` grid (adaptive ``ceil(roi_size / output_size)`` per RoI when 0), samples outside
[-1, size] contributing zero, coordinates clamped at 0 and at size - 1, and the mean over the grid. Only the
summation order differs, so outputs and gradients agree with mmcv's to float rounding (tests/models/
test_roi_align.py). RoIs get no gradient, as in mmcv.

``vitdense.SingleRoIExtractor`` is mmdet's ``SingleRoIExtractor`` that can also build ``vitdense.RoIAlign``
(mmdet looks RoI layers up in ``mmcv.ops`` by name), so a config switches with::

    bbox_roi_extractor=dict(type='vitdense.SingleRoIExtractor',
                            roi_layer=dict(type='vitdense.RoIAlign', output_size=7, sampling_ratio=0))
"""
import warnings
from typing import Tuple, Union

import torch
import torch.nn as nn
from torch.nn.modules.utils import _pair

from vitdense.errors import ConfigError
from vitdense.registry import MODELS


def _axis_samples(start: torch.Tensor, bin_size: torch.Tensor, grid: torch.Tensor, bins: int, max_grid: int,
                  size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Bilinear taps along one axis, per RoI, bin and sample: (N, bins, max_grid, 2) pixel indices and weights.

    Samples past a RoI's own grid (``grid`` < ``max_grid``) and samples outside [-1, size] get weight 0.
    The arithmetic follows mmcv's ``pre_calc_for_bilinear_interpolate`` step by step, in the input's dtype.
    """
    dtype = start.dtype
    p = torch.arange(bins, dtype=dtype, device=start.device).view(1, bins, 1)
    i = torch.arange(max_grid, dtype=dtype, device=start.device).view(1, 1, max_grid)
    grid_f = grid.to(dtype).view(-1, 1, 1)
    bin_size = bin_size.view(-1, 1, 1)
    pos = start.view(-1, 1, 1) + p * bin_size + (i + 0.5) * bin_size / grid_f
    valid = (pos >= -1.0) & (pos <= size) & (i < grid_f)
    pos = pos.clamp(min=0)
    low = pos.to(torch.int32)  # pos >= 0: truncation is floor, as mmcv's (int) cast
    at_edge = low >= size - 1
    low = torch.where(at_edge, size - 1, low)
    high = torch.where(at_edge, size - 1, low + 1)
    frac = torch.where(at_edge, torch.zeros((), dtype=dtype, device=start.device), pos - low)
    weights = torch.stack([1.0 - frac, frac], -1) * valid.unsqueeze(-1)
    return torch.stack([low, high], -1), weights


def sampling_matrix(rois: torch.Tensor, feature_shape: Tuple[int, int, int], output_size: Tuple[int, int],
                    spatial_scale: float, sampling_ratio: int, aligned: bool, dtype: torch.dtype) -> torch.Tensor:
    """The (N * out_h * out_w, B * H * W) sparse CSR matrix of RoIAlign's weights (``feature_shape`` = B, H, W).

    Each row (a RoI bin) holds its grid's bilinear taps, already divided by the grid's sample count. Rows are
    built padded to the largest grid of the call (so the matrix comes from a few broadcast operations, not from
    per-sample index arithmetic) and the padding is dropped when it is a large share of the entries.
    """
    batch, height, width = feature_shape
    out_h, out_w = output_size
    num = rois.shape[0]
    rois = rois.to(dtype)
    offset = 0.5 if aligned else 0.0
    x1 = rois[:, 1] * spatial_scale - offset
    y1 = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - x1
    roi_h = rois[:, 4] * spatial_scale - offset - y1
    if not aligned:  # legacy mode: RoIs at least one pixel wide
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    if sampling_ratio > 0:
        grid_h = torch.full((num,), sampling_ratio, dtype=torch.int32, device=rois.device)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / out_h).to(torch.int32)
        grid_w = torch.ceil(roi_w / out_w).to(torch.int32)
    max_h = max(int(grid_h.max()), 1) if num else 1
    max_w = max(int(grid_w.max()), 1) if num else 1
    y_idx, y_wt = _axis_samples(y1, roi_h / out_h, grid_h, out_h, max_h, height)
    x_idx, x_wt = _axis_samples(x1, roi_w / out_w, grid_w, out_w, max_w, width)
    samples = (grid_h * grid_w).clamp(min=1).to(dtype)
    y_wt = y_wt / samples.view(-1, 1, 1, 1)
    first_pixel = (rois[:, 0].to(torch.int32) * (height * width)).view(-1, 1, 1, 1)
    # entries of one row, in order: y sample, x sample, y tap, x tap -> (N, out_h, out_w, max_h, max_w, 2, 2)
    values = y_wt.view(num, out_h, 1, max_h, 1, 2, 1) * x_wt.view(num, 1, out_w, 1, max_w, 1, 2)
    columns = (y_idx * width + first_pixel).view(num, out_h, 1, max_h, 1, 2, 1) + \
        x_idx.view(num, 1, out_w, 1, max_w, 1, 2)
    rows = num * out_h * out_w
    per_row = max_h * max_w * 4
    values, columns = values.reshape(-1), columns.reshape(-1)
    used = int((grid_h * grid_w).sum()) * out_h * out_w * 4
    if used < 0.35 * values.numel():  # very mixed grid sizes: dropping the padding costs less than multiplying zeros
        keep = ((torch.arange(max_h, device=rois.device).view(1, max_h, 1) < grid_h.view(-1, 1, 1)) &
                (torch.arange(max_w, device=rois.device).view(1, 1, max_w) < grid_w.view(-1, 1, 1)))
        keep = keep.view(num, 1, 1, max_h, max_w, 1, 1).expand(num, out_h, out_w, max_h, max_w, 2, 2).reshape(-1)
        values, columns = values[keep], columns[keep]
        counts = (grid_h * grid_w * 4).repeat_interleave(out_h * out_w)
    else:
        counts = torch.full((rows,), per_row, dtype=torch.int32, device=rois.device)
    crow = torch.zeros(rows + 1, dtype=torch.int32, device=rois.device)
    crow[1:] = counts.cumsum(0)
    return _csr(crow, columns, values, (rows, batch * height * width))


def _csr(crow, columns, values, size) -> torch.Tensor:
    with warnings.catch_warnings():  # torch's "sparse CSR support is in beta" notice: CSR @ dense is all we use
        warnings.simplefilter('ignore', UserWarning)
        return torch.sparse_csr_tensor(crow, columns, values, size=size, check_invariants=False)


def _transpose(matrix: torch.Tensor) -> torch.Tensor:
    """CSR transpose by sorting the entries by column (torch's CSR transpose is a CSC view its CPU matmul does
    not multiply in parallel)."""
    crow, col, values = matrix.crow_indices(), matrix.col_indices(), matrix.values()
    rows, cols = matrix.shape
    order = torch.argsort(col)
    row_of_entry = torch.arange(rows, dtype=torch.int32, device=col.device).repeat_interleave(crow.diff().long())
    crow_t = torch.zeros(cols + 1, dtype=torch.int32, device=col.device)
    crow_t[1:] = torch.bincount(col, minlength=cols).cumsum(0)
    return _csr(crow_t, row_of_entry[order], values[order], (cols, rows))


class _RoIAlignFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, features, rois, output_size, spatial_scale, sampling_ratio, aligned):
        batch, channels, height, width = features.shape
        matrix = sampling_matrix(rois, (batch, height, width), output_size, spatial_scale, sampling_ratio,
                                 aligned, features.dtype)
        table = features.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
        # addmm into uninitialised memory: a zero-filled product would write the whole output twice
        out = torch.addmm(table.new_empty(matrix.shape[0], channels), matrix, table, beta=0)
        ctx.matrix, ctx.feature_shape = matrix, features.shape
        # (N, C, out_h, out_w) in channels-last memory: mmcv's values, one copy of the output fewer
        return out.view(rois.shape[0], *output_size, channels).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad_output):
        batch, channels, height, width = ctx.feature_shape
        grad = grad_output.permute(0, 2, 3, 1).reshape(-1, channels)
        transposed = _transpose(ctx.matrix)
        grad_table = torch.addmm(grad.new_empty(transposed.shape[0], channels), transposed, grad, beta=0)
        grad_features = grad_table.view(batch, height, width, channels).permute(0, 3, 1, 2).contiguous()
        return grad_features, None, None, None, None, None


def roi_align(features: torch.Tensor, rois: torch.Tensor, output_size: Union[int, Tuple[int, int]],
              spatial_scale: float = 1.0, sampling_ratio: int = 0, aligned: bool = True) -> torch.Tensor:
    """``mmcv.ops.roi_align`` (``pool_mode='avg'``): features (B, C, H, W), rois (N, 5) as (batch index, x1, y1,
    x2, y2) in input pixels -> (N, C, out_h, out_w)."""
    output_size = _pair(output_size)
    if rois.shape[0] == 0:
        return features.new_zeros(0, features.shape[1], *output_size)
    dtype = features.dtype
    if dtype not in (torch.float32, torch.float64):  # sparse products: float32 / float64 only
        return roi_align(features.float(), rois.float(), output_size, spatial_scale, sampling_ratio,
                         aligned).to(dtype)
    return _RoIAlignFunction.apply(features, rois.detach(), output_size, float(spatial_scale),
                                   int(sampling_ratio), bool(aligned))


@MODELS.register_module()
class RoIAlign(nn.Module):
    """Drop-in for ``mmcv.ops.RoIAlign`` (same arguments and outputs; average pooling only)."""

    def __init__(self, output_size: Union[int, Tuple[int, int]], spatial_scale: float = 1.0,
                 sampling_ratio: int = 0, pool_mode: str = 'avg', aligned: bool = True):
        super().__init__()
        if pool_mode != 'avg':
            raise ConfigError(f"vitdense.RoIAlign pools by average only (pool_mode='avg'), got "
                              f"pool_mode={pool_mode!r}; use mmcv's RoIAlign for max pooling")
        if sampling_ratio < 0:
            raise ConfigError(f'vitdense.RoIAlign: sampling_ratio must be >= 0 (0: adaptive), got {sampling_ratio}')
        self.output_size = _pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.pool_mode = pool_mode
        self.aligned = aligned

    def forward(self, features: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return roi_align(features, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (f'output_size={self.output_size}, spatial_scale={self.spatial_scale}, '
                f'sampling_ratio={self.sampling_ratio}, aligned={self.aligned}')


@MODELS.register_module(name='SingleRoIExtractor')
def single_roi_extractor(roi_layer: dict, **kwargs):
    """mmdet's ``SingleRoIExtractor`` whose ``roi_layer`` may name a vitdense op (``type='vitdense.RoIAlign'``).

    mmdet resolves a RoI layer's name in ``mmcv.ops`` only, but takes a class as well; this builder hands it
    the class. Other arguments are mmdet's (``out_channels``, ``featmap_strides``, ``finest_scale``, ...).
    A builder function rather than a subclass, so that importing ``vitdense.models`` does not import mmdet.
    """
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    layer = dict(roi_layer)
    if isinstance(layer.get('type'), str) and layer['type'].startswith('vitdense.'):
        layer['type'] = MODELS.get(layer['type'])
    return SingleRoIExtractor(roi_layer=layer, **kwargs)
