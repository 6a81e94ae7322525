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
    timer.start_backward()
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
