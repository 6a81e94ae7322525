"""What every backbone family shares through DenseBackbone: torch.compile takes each one as a single graph."""
import contextlib

import pytest
import torch

from vitdense.registry import MODELS

# Narrow versions of each family (the code paths of the full models, CPU-test sizes); the ViT with windows
# (ViTDet style, padding traced), also with ViTDet's relative position bias (tables resampled at run time in
# the global block), CeiT with its class token. A 'type' says the registered name where the key is a variant.
SMALL_BACKBONES = {
    'SwinTransformer': dict(arch=dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))),
    'ConvNeXt': dict(arch=dict(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128))),
    'BOATSwin': dict(arch=dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))),
    'BOATCSWin': dict(arch=dict(embed_dim=32, depths=(1, 2, 2, 1), num_heads=(2, 2, 4, 8))),
    'Sequencer2D': dict(arch=dict(layers=(1, 1, 1, 1), embed_dims=(32, 64, 64, 64), hidden_sizes=(8, 16, 16, 16))),
    'VisionTransformer': dict(arch=dict(embed_dim=96, depth=2, num_heads=3), window_size=4,
                              global_attn_indexes=(1,), with_cls_token=False),
    'VisionTransformer-rel-pos': dict(type='VisionTransformer', arch=dict(embed_dim=96, depth=2, num_heads=3),
                                      window_size=4, global_attn_indexes=(1,), with_cls_token=False,
                                      use_rel_pos=True),
    'CeiT': dict(arch=dict(embed_dim=96, depth=2, num_heads=3), stem_channels=16),
    'HybridVisionTransformer': dict(arch=dict(layers=(1, 1, 1), channels=(128, 256, 512), stem_channels=32,
                                              embed_dim=96, depth=2, num_heads=3)),
    'TimmBackbone': dict(model_name='test_convnext'),
}


def build_small(name, **overrides):
    """The family's SMALL_BACKBONES model in training mode, without stochastic depth (deterministic outputs)."""
    kwargs = dict(dict(type=name), **SMALL_BACKBONES[name], **overrides)
    if kwargs['type'] != 'TimmBackbone':  # timm models take drop_path_rate only where they have it
        kwargs['drop_path_rate'] = 0.0
    return MODELS.build(kwargs).train()


@pytest.mark.parametrize('name', sorted(SMALL_BACKBONES))
def test_torch_compile_takes_the_whole_backbone_as_one_graph(name):
    """fullgraph=True raises at the first graph break; the captured graph (run by the eager backend, so the
    test needs no C++ compiler) gives the eager outputs, for two input sizes (a recompile each: BOAT's
    clustering layout and the window paddings depend on the size) in training mode."""
    model = build_small(name)
    compiled = torch.compile(model, backend='eager', fullgraph=True, dynamic=False)
    # dynamo wraps nn.LSTM only when told to; scoped to the traced calls, as Sequencer2D's docstring shows users
    tracing = torch._dynamo.config.patch(allow_rnn=True) if name == 'Sequencer2D' else contextlib.nullcontext()
    for hw in ((64, 96), (50, 68)):
        x = torch.randn(1, 3, *hw)
        expected = model(x)
        with tracing:
            outputs = compiled(x)
        assert len(outputs) == len(expected) == 4
        for out, ref in zip(outputs, expected):
            assert out.shape == ref.shape
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('name', sorted(SMALL_BACKBONES))
def test_with_cp_gives_the_same_outputs_and_gradients(name, monkeypatch):
    """Activation checkpointing (``with_cp=True``) really checkpoints and changes neither the outputs nor any
    gradient, in every family."""
    import torch.utils.checkpoint as cp
    calls = []
    real_checkpoint = cp.checkpoint
    monkeypatch.setattr(cp, 'checkpoint', lambda fn, *a, **k: calls.append(fn) or real_checkpoint(fn, *a, **k))
    x = torch.randn(1, 3, 64, 96)
    outputs, grads = [], []
    for with_cp in (False, True):
        torch.manual_seed(0)
        model = build_small(name, with_cp=with_cp)
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


def block_drop_rates(model):
    """Every block's drop-path rate, blocks in forward order (a stem + stages family or a token encoder)."""
    if hasattr(model, 'blocks'):
        blocks = list(model.blocks)
    else:
        blocks = [b for stage in (model.layers if hasattr(model, 'layers') else model.stages) for b in stage.blocks]
    return [getattr(b.drop_path1 if hasattr(b, 'drop_path1') else b.drop_path, 'drop_prob', 0.0) for b in blocks]


@pytest.mark.parametrize('name', sorted(set(SMALL_BACKBONES) - {'TimmBackbone'}))
def test_one_drop_path_schedule_for_every_family(name):
    """drop_path_rate rises linearly over all blocks, with timm's numbers (timm's ViT / Swin / ConvNeXt rule)."""
    from timm.layers import calculate_drop_path_rates
    model = MODELS.build(dict(dict(type=name), **SMALL_BACKBONES[name], drop_path_rate=0.3))
    rates = block_drop_rates(model)
    assert len(rates) > 1
    assert rates == calculate_drop_path_rates(0.3, len(rates))


def test_layer_depth_mode_is_checked_once_for_every_backbone():
    """DenseBackbone.get_layer_depth checks the mode, then asks the family's param_depth."""
    from vitdense.models.backbones import DenseBackbone

    class TwoDepths(DenseBackbone):
        def param_depth(self, param_name, mode):
            return (0 if param_name.startswith('stem') else 1), (2 if mode == 'layer_wise' else 3)

    backbone = TwoDepths()
    assert backbone.get_layer_depth('stem.weight') == (0, 2)
    assert backbone.get_layer_depth('head.weight', 'stage_wise') == (1, 3)
    with pytest.raises(ValueError, match="mode must be 'layer_wise' or 'stage_wise', got 'block_wise'"):
        backbone.get_layer_depth('stem.weight', 'block_wise')
    for name in SMALL_BACKBONES:
        with pytest.raises(ValueError, match="mode must be 'layer_wise' or 'stage_wise', got 'block_wise'"):
            build_small(name).get_layer_depth('', 'block_wise')
