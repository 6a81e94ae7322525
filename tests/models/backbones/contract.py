"""The backbone contract of ``vitdense/models/backbones/base.py`` as checks any family's test runs.

A new family's test gets them all by subclassing :class:`BackboneContract` with a ``build`` that makes a small,
deterministic model of the family (no stochastic depth)::

    class TestMyFamilyContract(BackboneContract):
        def build(self, **overrides):
            return MyFamily(arch=dict(...), drop_path_rate=0.0, **overrides)

``tests/models/backbones/test_base.py`` runs the same checks for the families vitdense ships.
"""
import contextlib

import pytest
import torch

from vitdense.checkpoint import load_pretrained

SIZES = ((32, 32), (50, 68), (97, 131))
STRIDES = (4, 8, 16, 32)


def check_pyramid(model, sizes=SIZES):
    """One NCHW map per ``out_indices`` at strides 4/8/16/32 of ceil sizes, the same channels for every size;
    an input smaller than ``min_input_size`` is refused with one line naming the minimum."""
    model.eval()
    channels = None
    with torch.no_grad():
        for h, w in sizes:
            if min(h, w) < model.min_input_size:
                continue
            outs = model(torch.randn(2, model.in_channels, h, w))
            assert isinstance(outs, tuple) and len(outs) == len(model.out_indices)
            channels = channels or [o.shape[1] for o in outs]
            strides = [STRIDES[i] for i in model.out_indices]
            want = [(c, -(-h // s), -(-w // s)) for c, s in zip(channels, strides)]
            assert [tuple(o.shape[1:]) for o in outs] == want and all(o.shape[0] == 2 for o in outs)
            assert all(torch.isfinite(o).all() for o in outs)
    assert channels is not None, f'no size in {sizes} reaches min_input_size {model.min_input_size}'
    small = model.min_input_size - 1
    with pytest.raises(ValueError, match=f'smaller than its total stride {model.min_input_size}') as err:
        model(torch.randn(1, model.in_channels, small, small))
    assert '\n' not in str(err.value)


def check_out_indices(build):
    """``out_indices`` picks the levels (and their order of strides)."""
    model = build(out_indices=(1, 3)).eval()
    h, w = 64, 96
    with torch.no_grad():
        outs = model(torch.randn(1, model.in_channels, h, w))
    assert [tuple(o.shape[2:]) for o in outs] == [(-(-h // s), -(-w // s)) for s in (8, 32)]


def check_frozen_stages(build, frozen_stages=1):
    """Frozen parts stay in eval mode through ``train()`` and get no gradient; the rest still trains."""
    model = build(frozen_stages=frozen_stages).train()
    frozen = model.frozen_modules()
    assert frozen, 'frozen_stages >= 0 freezes at least the stem'
    frozen_params = {id(p) for m in frozen for p in m.parameters()}
    assert frozen_params and all(not m.training for mod in frozen for m in mod.modules())
    trainable = [p for p in model.parameters() if id(p) not in frozen_params]
    assert trainable and all(p.requires_grad for p in trainable)
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    sum(o.float().mean() for o in model(torch.randn(1, model.in_channels, 64, 64))).backward()
    assert all(p.grad is None for m in frozen for p in m.parameters())


def check_layer_depth(model):
    """Every parameter has a depth in [0, num_depths) with one num_depths per mode; an unknown mode is refused."""
    names = [n for n, _ in model.named_parameters()]
    for mode in ('layer_wise', 'stage_wise'):
        depths = [model.get_layer_depth(n, mode) for n in names]
        nums = {num for _, num in depths}
        assert len(nums) == 1, f'{mode}: several num_depths {nums}'
        num = nums.pop()
        assert all(0 <= d < num for d, _ in depths), mode
        assert len({d for d, _ in depths}) >= 2, f'{mode}: every parameter at one depth'
    with pytest.raises(ValueError, match='mode'):
        model.get_layer_depth(names[0], 'per_parameter')


def check_own_checkpoint_round_trip(model, fresh, path):
    """The backbone's own state dict is its own layout: ``adapt_checkpoint`` renames, drops and resizes nothing,
    and ``load_pretrained`` fills every tensor of a fresh backbone, which then computes the same maps."""
    sd = model.state_dict()
    adaptation = model.adapt_checkpoint(sd)
    assert (adaptation.renamed, adaptation.dropped, adaptation.resized) == ({}, {}, {})
    assert list(adaptation.state_dict) == list(sd)
    torch.save({'state_dict': sd}, path)
    report = load_pretrained(fresh, str(path), logger='silent')
    assert report.missing == [] and report.dropped == [] and len(report.loaded) == len(sd)
    x = torch.randn(1, model.in_channels, 64, 96)
    with torch.no_grad():
        for a, b in zip(model.eval()(x), fresh.eval()(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def check_compiles_as_one_graph(model, tracing=contextlib.nullcontext):
    """fullgraph=True raises at the first graph break; the captured graph (run by the eager backend, so the
    check needs no C++ compiler) gives the eager outputs, for two input sizes (a recompile each) in training
    mode. ``tracing``: a context the compiled calls run in (e.g. a dynamo setting the family needs)."""
    compiled = torch.compile(model, backend='eager', fullgraph=True, dynamic=False)
    for hw in ((64, 96), (50, 68)):
        x = torch.randn(1, model.in_channels, *hw)
        expected = model(x)
        with tracing():
            outputs = compiled(x)
        assert len(outputs) == len(expected) == len(model.out_indices)
        for out, ref in zip(outputs, expected):
            assert out.shape == ref.shape
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def check_with_cp(build, monkeypatch):
    """Activation checkpointing (``with_cp=True``) really checkpoints and changes neither the outputs nor any
    gradient."""
    import torch.utils.checkpoint as cp
    calls = []
    real_checkpoint = cp.checkpoint
    monkeypatch.setattr(cp, 'checkpoint', lambda fn, *a, **k: calls.append(fn) or real_checkpoint(fn, *a, **k))
    x = torch.randn(1, 3, 64, 96)
    outputs, grads = [], []
    for with_cp in (False, True):
        torch.manual_seed(0)
        model = build(with_cp=with_cp).train()
        calls.clear()
        y = model(x)
        assert bool(calls) == with_cp
        sum((o ** 2).mean() for o in y).backward()
        outputs.append(y)
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for a, b in zip(*outputs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert grads[0].keys() == grads[1].keys()
    for n, g in grads[0].items():
        assert g is not None, f'{n} got no gradient'
        torch.testing.assert_close(g, grads[1][n], rtol=1e-4, atol=1e-6, msg=n)


class BackboneContract:
    """Every contract check as a test; a family's test subclasses it (name it ``Test...``) and defines ``build``."""

    def build(self, **overrides):
        raise NotImplementedError

    def test_pyramid(self):
        check_pyramid(self.build())

    def test_out_indices(self):
        check_out_indices(self.build)

    def test_frozen_stages(self):
        check_frozen_stages(self.build)

    def test_layer_depth(self):
        check_layer_depth(self.build())

    def test_own_checkpoint_round_trip(self, tmp_path):
        check_own_checkpoint_round_trip(self.build(), self.build(), tmp_path / 'own.pth')

    def test_compiles_as_one_graph(self):
        check_compiles_as_one_graph(self.build().train())

    def test_with_cp(self, monkeypatch):
        check_with_cp(self.build, monkeypatch)
