import glob
import os

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.conftest import (REPO, build_model, config_backbone, det_batch, expected_shapes, randomize, rel_err,
                            saved_random_timm, seg_batch, training_step)
from vitdense.models.backbones import Sequencer2D
from vitdense.models.layers import resample_to_stride

CHANNELS = [192, 192, 384, 384]


@pytest.fixture(scope='module', autouse=True)
def _one_thread():
    """The LSTM kernels run on tiny maps here: with several OpenMP threads on a shared, oversubscribed
    machine they spin-wait for each other (observed 10-30x slower); one thread keeps this file fast."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = dict(layers=(2, 1, 2, 1))  # Sequencer2D widths, fewer blocks: for tests of behaviour, not weights


@pytest.fixture(scope='module')
def timm_s():
    """timm's sequencer2d_s (with its classifier) holding a random state dict, and that state dict."""
    ref = timm.create_model('sequencer2d_s', num_classes=1000).eval()
    sd = randomize(ref.state_dict(), seed=1)
    ref.load_state_dict(sd)
    return ref, sd


def official_layout(sd, depths):
    """timm names -> okojoalg/sequencer release names (downsample as the last entry of the previous stage)."""
    out = {}
    for k, v in sd.items():
        parts = k.split('.')
        if parts[0] == 'stages' and parts[2] == 'downsample':
            i = int(parts[1])
            k = f'blocks.{i - 1}.{depths[i - 1]}.' + '.'.join(parts[3:])  # ...down.weight
        elif parts[0] == 'stages':
            k = f'blocks.{parts[1]}.' + '.'.join(parts[3:])
        out[k.replace('head.fc.', 'head.')] = v
    return out


def layer_norm(x):  # the fresh output norms: weight 1, bias 0
    return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], eps=1e-6).permute(0, 3, 1, 2)


# ---- trunk parity ------------------------------------------------------------------------------------------
def test_trunk_parity_with_timm_same_weights(timm_s):
    ref, sd = timm_s
    ours = Sequencer2D('small', drop_path_rate=0.0).eval()
    result = ours.load_state_dict(sd, strict=False)
    assert set(result.unexpected_keys) == {'norm.weight', 'norm.bias', 'head.fc.weight', 'head.fc.bias'}
    assert all(k.startswith(('to_stride4.', 'to_stride32.', 'out_norms.')) for k in result.missing_keys)
    for hw in [(70, 98), (61, 75)]:  # a multiple of 14, and an odd size (both stems floor alike)
        x = torch.randn(2, 3, *hw)
        with torch.no_grad():
            ours_maps = ours.forward_trunk(x)
            ref_maps = ref.forward_intermediates(x, intermediates_only=True, output_fmt='NHWC')
        assert len(ours_maps) == 4
        for a, b in zip(ours_maps, ref_maps):
            assert a.shape == b.shape
            assert rel_err(a, b) <= 1e-5


def test_pyramid_levels_are_resampled_timm_maps(timm_s):
    """At 224 x 224 (a multiple of 14 and 32) level 1 is timm's stage-0 map resampled 7 -> 8, level 2 its
    stage-3 map resampled 14 -> 16, each layer-normed; level 0 starts as level 1 upsampled (nearest) and
    level 3 (before its norm) as the stride-16 map 2x2-average-pooled."""
    ref, sd = timm_s
    ours = Sequencer2D('s', drop_path_rate=0.0).eval()
    ours.load_state_dict(sd, strict=False)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        stage0, _, _, stage3 = ref.forward_intermediates(x, intermediates_only=True)  # 32x32, 16x16
        outs = ours(x)
        s16 = F.interpolate(stage3, scale_factor=14 / 16, mode='bilinear', align_corners=False)
        expected1 = layer_norm(F.interpolate(stage0, scale_factor=7 / 8, mode='bilinear', align_corners=False))
        assert outs[1].shape[-2:] == (28, 28) and rel_err(outs[1], expected1) <= 1e-5
        assert outs[2].shape[-2:] == (14, 14) and rel_err(outs[2], layer_norm(s16)) <= 1e-5
        assert rel_err(outs[0], outs[1].repeat_interleave(2, -2).repeat_interleave(2, -1)) <= 1e-5
        assert rel_err(outs[3], layer_norm(F.avg_pool2d(s16, 2))) <= 1e-5


def test_resample_to_stride_keeps_cell_centres():
    """Cell i of a stride-s map is centred at s * (i + 0.5): resampling a map of its own centre coordinates
    must give the new grid's centres (inside the source's extent), at exactly the requested size."""
    for src, dst, n, size in [(7, 8, 10, 9), (14, 16, 6, 6), (7, 4, 6, 11)]:
        centres = (src * (torch.arange(n) + 0.5)).view(1, 1, n, 1).expand(1, 1, n, n)
        out = resample_to_stride(centres, src, dst, (size, size + 2))
        assert out.shape[-2:] == (size, size + 2)
        want = dst * (torch.arange(size) + 0.5)
        # past the first / last source centre the edge value repeats
        assert torch.allclose(out[0, 0, :, 0], want.clamp(src / 2, src * (n - 0.5)), atol=1e-4)
        assert (want > src * (n - 0.5)).any()  # each case also exercises the edge
        assert torch.allclose(out[0, 0], out[0, 0, :, :1].expand(-1, size + 2))  # constant along columns


@pytest.mark.parametrize('hw', [(32, 32), (50, 68), (97, 131)])
def test_pyramid_strides_and_shapes_any_size(hw):
    model = Sequencer2D('s', drop_path_rate=0.0).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *hw))
    assert [tuple(o.shape[1:]) for o in outs] == expected_shapes(*hw, CHANNELS)
    assert all(o.is_contiguous() and torch.isfinite(o).all() for o in outs)


def test_out_indices_subset_and_errors():
    model = Sequencer2D(TINY, out_indices=(1, 2), drop_path_rate=0.0).eval()
    assert model.to_stride4 is None and model.to_stride32 is None
    with torch.no_grad():
        a = model(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape[1:]) for o in a] == [(192, 8, 12), (384, 4, 6)]
    with pytest.raises(ValueError, match=r'smaller than its total stride 32; resize or pad'):
        model(torch.randn(1, 3, 28, 64))
    with pytest.raises(ValueError, match=r"unknown Sequencer2D arch 'xl'; choose one of 's', 'm', 'l'"):
        Sequencer2D(arch='xl')
    with pytest.raises(ValueError, match=r"arch dict needs layers=.*got keys \['depths'\]"):
        Sequencer2D(arch=dict(depths=(2, 2, 2, 2)))


def test_building_leaves_dynamo_rnn_setting_alone():
    """No process-wide switch: torch.compile users scope allow_rnn themselves (see the module docstring)."""
    assert torch._dynamo.config.allow_rnn is False  # torch's default; nothing in vitdense sets it
    Sequencer2D(TINY, drop_path_rate=0.0)
    assert torch._dynamo.config.allow_rnn is False


def test_one_lstm_call_per_axis_for_the_whole_batch():
    """BiLSTM2D scans all B x W columns in one rnn_v call and all B x H rows in one rnn_h call."""
    model = Sequencer2D(dict(layers=(1, 1, 1, 1)), drop_path_rate=0.0).eval()
    calls = []
    for name, m in model.named_modules():
        if isinstance(m, nn.LSTM):
            m.register_forward_hook(lambda mod, inp, out, name=name: calls.append((name, tuple(inp[0].shape))))
    with torch.no_grad():
        model.forward_trunk(torch.randn(3, 3, 70, 98))  # stage 0: 10 x 14 tokens, stages 1-3: 5 x 7
    assert len(calls) == 8  # 4 blocks x (vertical, horizontal)
    assert calls[0] == ('stages.0.blocks.0.rnn_tokens.rnn_v', (3 * 14, 10, 192))
    assert calls[1] == ('stages.0.blocks.0.rnn_tokens.rnn_h', (3 * 10, 14, 192))
    assert calls[-1] == ('stages.3.blocks.0.rnn_tokens.rnn_h', (3 * 5, 7, 384))


# ---- training contract ---------------------------------------------------------------------------------------
def test_with_cp_checkpoints_every_block_once(monkeypatch):
    """Outputs and gradients with / without checkpointing: tests/models/backbones/test_base.py."""
    import torch.utils.checkpoint as cp
    checkpointed = []
    real_checkpoint = cp.checkpoint
    monkeypatch.setattr(cp, 'checkpoint', lambda fn, *a, **k: checkpointed.append(fn) or real_checkpoint(fn, *a, **k))
    model = Sequencer2D(TINY, drop_path_rate=0.0, with_cp=True).train()
    model(torch.randn(1, 3, 64, 96))
    blocks = [block for stage in model.stages for block in stage.blocks]
    assert len(checkpointed) == len(blocks) == 6
    assert {id(getattr(fn, '__self__', fn)) for fn in checkpointed} == {id(b) for b in blocks}


def test_frozen_stages_and_train_mode():
    model = Sequencer2D(TINY, frozen_stages=2, drop_path_rate=0.1)
    model.train()
    frozen = list(model.stem.parameters()) + list(model.stages[:2].parameters())
    assert frozen and all(not p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in model.stages[2].parameters())
    assert model.to_stride4.weight.requires_grad and model.out_norms[0].weight.requires_grad  # new layers train
    assert not model.stages[1].training and model.stages[2].training
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    assert all(p.grad is None for p in frozen)
    assert model.stages[2].blocks[0].rnn_tokens.rnn_v.weight_hh_l0.grad.abs().sum() > 0
    assert model.to_stride4.weight.grad.abs().sum() > 0


def test_drop_path_linear_over_blocks():
    model = Sequencer2D('m', drop_path_rate=0.2)
    rates = [getattr(b.drop_path, 'drop_prob', 0.0) for stage in model.stages for b in stage.blocks]
    assert len(rates) == 24 and rates[0] == 0.0 and abs(rates[-1] - 0.2) < 1e-6
    assert all(b > a for a, b in zip(rates, rates[1:]))


def test_layer_depth():
    model = Sequencer2D('s')  # 4 + 3 + 8 + 3 = 18 blocks -> 20 depths
    assert model.get_layer_depth('stem.proj.weight') == (0, 20)
    assert model.get_layer_depth('stages.0.blocks.0.rnn_tokens.rnn_v.weight_ih_l0') == (1, 20)
    assert model.get_layer_depth('stages.1.downsample.down.weight') == (5, 20)
    assert model.get_layer_depth('stages.1.blocks.2.mlp_channels.fc1.weight') == (7, 20)
    assert model.get_layer_depth('stages.3.blocks.2.norm2.bias') == (18, 20)
    assert model.get_layer_depth('to_stride4.weight') == (19, 20)
    assert model.get_layer_depth('out_norms.3.weight') == (19, 20)
    assert model.get_layer_depth('stem.proj.bias', 'stage_wise') == (0, 6)
    assert model.get_layer_depth('stages.2.blocks.5.rnn_tokens.fc.weight', 'stage_wise') == (3, 6)
    assert model.get_layer_depth('to_stride32.weight', 'stage_wise') == (5, 6)
    assert Sequencer2D('large').get_layer_depth('stages.3.blocks.3.norm1.weight') == (36, 38)
    with pytest.raises(ValueError, match="mode must be 'layer_wise' or 'stage_wise'"):
        model.get_layer_depth('stem.proj.weight', 'block_wise')


# ---- checkpoints ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize('layout', ['official', 'timm', 'features_only'])
def test_checkpoint_layouts_load_through_load_pretrained(tmp_path, layout, timm_s):
    from vitdense.checkpoint import load_pretrained
    ref, sd = timm_s
    ours = Sequencer2D('s', drop_path_rate=0.0).eval()
    if layout == 'official':
        saved = {'model': official_layout(sd, ours.depths)}
        assert 'blocks.0.4.down.weight' in saved['model'] and 'head.weight' in saved['model']
    elif layout == 'features_only':  # timm.create_model(..., features_only=True) names stages 'stages_<i>'
        saved = {k.replace('stages.', 'stages_', 1): v for k, v in sd.items()}
    else:
        saved = sd
    path = tmp_path / 'sequencer2d_s.pth'
    torch.save(saved, path)
    report = load_pretrained(ours, str(path))
    new = {k for k in ours.state_dict() if k.startswith(('to_stride4.', 'to_stride32.', 'out_norms.'))}
    assert set(report.missing) == new and len(new) == 12
    assert not report.dropped  # classifier head and final norm removed by the converter
    assert len(report.loaded) == len(sd) - 4
    assert any('official' in n for n in report.notes) == (layout == 'official')
    assert any('features_only' in n for n in report.notes) == (layout == 'features_only')
    x = torch.randn(1, 3, 70, 98)
    with torch.no_grad():
        for a, b in zip(ours.forward_trunk(x), ref.forward_intermediates(x, intermediates_only=True,
                                                                         output_fmt='NHWC')):
            assert rel_err(a, b) <= 1e-5


def test_checkpoint_of_another_width_is_one_clear_error(tmp_path, timm_s):
    from vitdense.checkpoint import CheckpointError, load_pretrained
    _, sd = timm_s
    path = tmp_path / 'sequencer2d_s.pth'
    torch.save(sd, path)
    narrow = Sequencer2D(dict(layers=(4, 3, 8, 3), embed_dims=(96, 192, 192, 192), hidden_sizes=(24, 48, 48, 48)))
    with pytest.raises(CheckpointError, match=r'does not fit Sequencer2D: \d+ tensors have other shapes'):
        load_pretrained(narrow, str(path))


# ---- configs and one training step per task --------------------------------------------------------------------
CONFIGS = sorted(p for p in glob.glob(os.path.join(REPO, 'configs', 'sequencer', '*.py'))  # detection / segmentation
                 if os.path.basename(p).startswith(('mask-rcnn_', 'upernet_', 'fpn_')))


def test_configs_parse_and_channels_match_the_backbone():
    from mmengine.config import Config
    from vitdense.registry import MODELS
    assert len(CONFIGS) == 14
    built = {}
    for path in CONFIGS:
        cfg = Config.fromfile(path)
        backbone = cfg.model.backbone
        assert backbone.type == 'vitdense.Sequencer2D', path
        arch = os.path.basename(path).split('sequencer2d-')[1][0]
        assert backbone.arch == arch, path
        assert ('mini' in path) == (backbone.init_cfg.checkpoint is None), path
        if 'mini' not in path:
            assert backbone.init_cfg.checkpoint == f'checkpoints/sequencer2d_{arch}.pth', path
        head_channels = cfg.model.neck.in_channels if 'neck' in cfg.model else cfg.model.decode_head.in_channels
        assert list(head_channels) == CHANNELS, path
        assert cfg.optim_wrapper.optimizer.type == 'AdamW', path
        if path.endswith('80k_ade20k-512x512.py'):
            assert cfg.train_cfg.max_iters == 80000 and cfg.model.decode_head.type == 'FPNHead'
        key = (backbone.arch, backbone.drop_path_rate)
        if key not in built:  # each distinct backbone builds from its config dict and emits those channels
            built[key] = MODELS.build(backbone)
            assert built[key].num_features == CHANNELS
            assert abs(built[key].stages[-1].blocks[-1].drop_path.drop_prob - backbone.drop_path_rate) < 1e-6
    assert sorted(built) == [('l', 0.3), ('m', 0.2), ('s', 0.1)]


def test_semantic_fpn_config_builds_and_segments():
    torch.manual_seed(0)
    _, model = sequencer_model('fpn_sequencer2d-s_4xb4-80k_ade20k-512x512.py', init_weights=False)
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 96), mode='tensor')
    assert logits.shape == (1, 150, 16, 24) and torch.isfinite(logits).all()


def sequencer_model(name, init_weights=True):
    from mmengine.config import Config
    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'sequencer', name))
    model = build_model(cfg)
    if init_weights:  # the mini configs start from scratch; the full ones would look for ImageNet weights
        model.init_weights()
    return cfg, model


def test_mask_rcnn_training_step_on_cpu():
    torch.manual_seed(0)
    cfg, model = sequencer_model('mask-rcnn_sequencer2d-s_fpn_mini-coco.py')
    first_rnn = model.backbone.stages[0].blocks[0].rnn_tokens.rnn_v.weight_hh_l0
    training_step(model, cfg.optim_wrapper, det_batch(model, (64, 64)), [first_rnn])


def test_upernet_training_step_on_cpu():
    torch.manual_seed(0)
    cfg, model = sequencer_model('upernet_sequencer2d-s_mini-ade20k.py')
    model.data_preprocessor.size = (64, 64)
    first_rnn = model.backbone.stages[0].blocks[0].rnn_tokens.rnn_v.weight_hh_l0
    training_step(model, cfg.optim_wrapper, seg_batch(model, (64, 64)), [first_rnn, model.backbone.to_stride4.weight])



def test_in1k_config_backbone_through_init_cfg_is_timm_at_224(tmp_path):
    """The classifier config's backbone, a random timm sequencer2d_s file loaded through its init_cfg: timm's
    stage maps at 224 (pyramid=False; through vitdense's fresh output norms), so its pooled last map is timm's
    classifier's pooled feature (the pyramid's stride-16 level would pool a 14 x 14 resample of it)."""
    ref = saved_random_timm('sequencer2d_s', tmp_path / 'sequencer2d_s.pth', seed=2)
    ours = config_backbone('sequencer/sequencer2d-s_in1k.py', tmp_path / 'sequencer2d_s.pth')
    every_stage = config_backbone('sequencer/sequencer2d-s_in1k.py', tmp_path / 'sequencer2d_s.pth',
                                  out_indices=(0, 1, 2, 3))
    assert ours.out_indices == (3,) and not ours.pyramid and ours.num_features == [192, 384, 384, 384]
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = [layer_norm(m) for m in ref.forward_intermediates(x, intermediates_only=True)]
        (last,) = ours(x)
        maps = every_stage(x)
    assert last.shape == expected[3].shape == (1, 384, 16, 16) and rel_err(last, expected[3]) <= 1e-5
    for a, b in zip(maps, expected):
        assert a.shape == b.shape and rel_err(a, b) <= 1e-5


def test_pyramid_must_be_a_bool():
    with pytest.raises(ValueError, match=r'Sequencer2D: pyramid must be True .* or False .*got 0'):
        Sequencer2D(arch=TINY, pyramid=0)
