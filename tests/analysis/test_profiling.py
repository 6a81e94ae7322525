"""vitdense.analysis.profiling.PartTimer: per-part forward times and the backward pass cut at the right places."""
import time

import pytest
import torch
import torch.nn as nn

from vitdense.analysis.profiling import PartTimer, model_parts


class SlowBackward(torch.autograd.Function):
    """Identity whose backward sleeps a known time."""

    @staticmethod
    def forward(ctx, x, seconds):
        ctx.seconds = seconds
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        time.sleep(ctx.seconds)
        return grad, None


class Part(nn.Module):
    def __init__(self, forward_s, backward_s):
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.forward_s, self.backward_s = forward_s, backward_s

    def forward(self, x):
        time.sleep(self.forward_s)
        return SlowBackward.apply(self.linear(x), self.backward_s)


class Detector(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Part(0.05, 0.30)
        self.neck = Part(0.0, 0.10)
        self.rpn_head = Part(0.15, 0.0)


def test_forward_and_backward_split_by_part():
    model = Detector()
    parts = model_parts(model)
    assert list(parts) == ['backbone', 'neck', 'rpn_head']
    timer = PartTimer(parts)
    with timer.track():
        loss = model.rpn_head(model.neck(model.backbone(torch.randn(2, 4)))).sum()
    timer.start_backward(loss)
    start = time.perf_counter()
    loss.backward()
    timer.end_backward()
    total = time.perf_counter() - start
    assert timer.calls == {'backbone': 1, 'neck': 1, 'rpn_head': 1}
    assert timer.forward_s['backbone'] == pytest.approx(0.05, abs=0.04)
    assert timer.forward_s['rpn_head'] == pytest.approx(0.15, abs=0.04)
    assert timer.forward_s['neck'] < 0.04
    # each sleep lands in its own part's backward segment, and the segments add up to the whole pass
    assert timer.backward_s['backbone'] == pytest.approx(0.30, abs=0.06)
    assert timer.backward_s['neck'] == pytest.approx(0.10, abs=0.05)
    assert timer.backward_s['rpn_head'] < 0.05
    assert sum(timer.backward_s.values()) == pytest.approx(total, abs=0.02)


def test_parts_found_in_an_mmdet_two_stage_layout():
    class RoIHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.bbox_roi_extractor, self.bbox_head = nn.Identity(), nn.Identity()

    model = nn.Module()
    model.backbone, model.neck, model.roi_head = nn.Identity(), nn.Identity(), RoIHead()
    assert list(model_parts(model)) == ['backbone', 'neck', 'roi_head.bbox_roi_extractor', 'roi_head.bbox_head']


class TwoStageBackbone(nn.Module):
    """Two stages, each output also feeding the next stage (as a Swin / ConvNeXt stage does)."""

    def __init__(self):
        super().__init__()
        self.stage1, self.stage2 = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        x1 = SlowBackward.apply(self.stage1(x), 0.15)
        x2 = SlowBackward.apply(self.stage2(x1), 0.15)
        return x1 * 1, x2 * 1


class TopDownNeck(nn.Module):
    """FPN's shape: lateral layers, a top-down sum, an output layer per level with a slow backward."""

    def __init__(self):
        super().__init__()
        self.lateral1, self.lateral2 = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, feats):
        top = self.lateral2(feats[1])
        low = self.lateral1(feats[0]) + top
        return SlowBackward.apply(low, 0.10), SlowBackward.apply(top, 0.10)


def test_backbone_backward_interleaved_with_the_neck_is_still_the_backbones():
    """Autograd runs the top stage's backward as soon as its lateral layer is done, before the lower lateral
    layers: the backbone's 0.3 s must not land in the neck's line (it did, when the pass was cut at the moment
    each part's outputs had their gradient)."""
    model = nn.Module()
    model.backbone, model.neck = TwoStageBackbone(), TopDownNeck()
    timer = PartTimer(model_parts(model))
    with timer.track():
        outs = model.neck(model.backbone(torch.randn(2, 4)))
        loss = outs[0].sum() + outs[1].sum()
    timer.start_backward(loss)
    loss.backward()
    timer.end_backward()
    assert timer.backward_s['backbone'] == pytest.approx(0.30, abs=0.06)
    assert timer.backward_s['neck'] == pytest.approx(0.20, abs=0.06)
    assert timer.backward_s['losses and targets'] < 0.05
    assert timer.backward_s['autograd engine (between nodes)'] < 0.05
    assert set(timer.backward_s) <= {'backbone', 'neck', 'losses and targets', 'gradient accumulation',
                                     'autograd engine (between nodes)'}
