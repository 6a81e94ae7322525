"""TimmViT: timm's plain ViTs (DINOv2 with / without registers, DeiT III, EVA-02, samvit) as pyramid backbones.

Narrow variants (depth 2, width 64, built with timm's own kwargs) take the code paths of the full models at a
fraction of the CPU time; parity is against timm's ``forward_intermediates`` for the same random weights.
"""
import glob
import os

import pytest
import timm
import torch

from tests.conftest import (REPO, ODD_SIZES, build_model, det_batch, expected_shapes, randomize, rel_err, seg_batch,
                            training_step)
from vitdense.checkpoint import CheckpointError, load_pretrained
from vitdense.errors import ConfigError
from vitdense.models.backbones import TimmViT
from vitdense.models.necks import SimpleFeaturePyramid

NARROW = dict(depth=2, embed_dim=64, num_heads=2)
CHANNELS = [16, 32, 64, 64]
# model name -> its timm pretraining size in the narrow tests (a 4 x 4 token grid)
MODELS = {
    'vit_small_patch14_dinov2': 56,
    'vit_base_patch14_reg4_dinov2': 56,
    'deit3_small_patch16_224': 64,
    'eva02_small_patch14_224': 56,
    'samvit_base_patch16': 64,
}


def narrow(name, **kwargs):
    kwargs.setdefault('img_size', MODELS[name])
    kwargs.setdefault('drop_path_rate', 0.0)
    return TimmViT(name, model_kwargs=dict(NARROW), **kwargs)


def saved_timm(name, path, seed=0, **kwargs):
    """timm's narrow ``name`` (eval) with random weights, its state dict saved to ``path``."""
    kwargs.setdefault('img_size', MODELS[name])
    ref = timm.create_model(name, pretrained=False, **NARROW, **kwargs).eval()
    ref.load_state_dict(randomize(ref.state_dict(), seed=seed))
    torch.save(ref.state_dict(), path)
    return ref


def loaded(name, path, **kwargs):
    model = narrow(name, init_cfg=dict(type='Pretrained', checkpoint=str(path)), **kwargs)
    model.init_weights()
    return model.eval()


def timm_last_map(ref, x, norm=False):
    with torch.no_grad():
        return ref.forward_intermediates(x, intermediates_only=True, norm=norm)[-1]


@pytest.mark.parametrize('name', sorted(MODELS))
def test_token_map_through_init_cfg_equals_timm_forward_intermediates(name, tmp_path):
    """A random timm state dict saved to a file and loaded through init_cfg: the patch-token map before the
    pyramid equals timm's last forward_intermediates map at the pretraining size (registers, layer scales,
    RoPE, SAM's windows and relative positions all on timm's own path)."""
    ref = saved_timm(name, tmp_path / 'timm.pth')
    ours = loaded(name, tmp_path / 'timm.pth')
    x = torch.randn(2, 3, MODELS[name], MODELS[name])
    with torch.no_grad():
        got = ours.token_map(x)
    want = timm_last_map(ref, x)
    assert got.shape == want.shape == (2, 64, 4, 4)
    assert rel_err(got, want) <= 1e-5


def test_final_norm_gives_timm_normed_intermediates(tmp_path):
    ref = saved_timm('vit_base_patch14_reg4_dinov2', tmp_path / 'timm.pth')
    ours = loaded('vit_base_patch14_reg4_dinov2', tmp_path / 'timm.pth', final_norm=True)
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        got = ours.token_map(x)
    assert rel_err(got, timm_last_map(ref, x, norm=True)) <= 1e-5
    assert rel_err(got, timm_last_map(ref, x)) > 1e-2


@pytest.mark.parametrize('name', ['vit_base_patch14_reg4_dinov2', 'eva02_small_patch14_224', 'samvit_base_patch16'])
def test_checkpoint_of_another_grid_equals_timm_at_that_grid(name, tmp_path):
    """A 4 x 4-grid checkpoint into an img_size=112 backbone (pos_embed resampled at load): timm's own model at
    112 with timm's own checkpoint filter gives the same tokens at 112 (DINOv2's pos_embed without prefix
    positions, EVA-02's with the class position and RoPE at another grid, samvit's NHWC pos_embed)."""
    ref = saved_timm(name, tmp_path / 'timm.pth')
    sd = torch.load(tmp_path / 'timm.pth')
    big = 2 * MODELS[name]
    if name != 'samvit_base_patch16':  # timm's samvit resamples its pos_embed at run time, the same way
        ref = timm.create_model(name, pretrained=False, img_size=big, **NARROW).eval()
        module = __import__(type(ref).__module__, fromlist=['checkpoint_filter_fn'])
        ref.load_state_dict(module.checkpoint_filter_fn(dict(sd), ref))
    ours = loaded(name, tmp_path / 'timm.pth', img_size=big)
    x = torch.randn(1, 3, big, big)
    with torch.no_grad():
        assert rel_err(ours.token_map(x), timm_last_map(ref, x)) <= 1e-5


def test_load_report_says_what_was_dropped_and_resized(tmp_path):
    saved_timm('eva02_small_patch14_224', tmp_path / 'timm.pth')
    sd = torch.load(tmp_path / 'timm.pth')
    # the official EVA-02 layout stores its RoPE tables; they are recomputed for every grid
    sd['rope.freqs_cos'] = torch.zeros(16, 32)
    sd['rope.freqs_sin'] = torch.zeros(16, 32)
    torch.save(sd, tmp_path / 'with_rope.pth')
    model = narrow('eva02_small_patch14_224', img_size=112)
    report = load_pretrained(model, str(tmp_path / 'with_rope.pth'))
    dropped = report.adaptation.dropped
    assert dropped['rope.freqs_cos'] == dropped['rope.freqs_sin'] == 'RoPE tables: recomputed for every input grid'
    assert dropped['fc_norm.weight'] == 'classifier only'
    assert report.adaptation.resized == {'vit.pos_embed': ((1, 17, 64), (1, 65, 64))}
    assert not report.dropped
    assert sorted(report.missing) == sorted(k for k in model.state_dict() if not k.startswith('vit.'))
    assert all(k.startswith(('pyramid.', 'out_norms.')) for k in report.missing)


def test_checkpoint_round_trip_with_registers_and_rope(tmp_path):
    """timm file -> backbone -> its own state dict saved -> a fresh backbone at another img_size: the same
    tokens at the first size (a vitdense checkpoint of this backbone loads as it is, pyramid included)."""
    for name in ('vit_base_patch14_reg4_dinov2', 'eva02_small_patch14_224'):
        saved_timm(name, tmp_path / 'timm.pth', seed=3)
        first = loaded(name, tmp_path / 'timm.pth', window_size=2, global_attn_indexes=(1,))
        torch.save({'state_dict': first.state_dict()}, tmp_path / 'ours.pth')
        again = loaded(name, tmp_path / 'ours.pth', window_size=2, global_attn_indexes=(1,))
        for k, v in first.state_dict().items():
            assert torch.equal(v, again.state_dict()[k]), k
        x = torch.randn(1, 3, 61, 75)
        with torch.no_grad():
            for a, b in zip(first(x), again(x)):
                assert torch.equal(a, b)


def test_register_count_mismatch_is_one_line(tmp_path):
    saved_timm('vit_base_patch14_reg4_dinov2', tmp_path / 'reg4.pth')
    model = narrow('vit_small_patch14_dinov2')
    with pytest.raises(CheckpointError, match=r'the checkpoint has 4 register tokens and vit_small_patch14_dinov2 '
                                              r'0; build the variant it was made for'):
        load_pretrained(model, str(tmp_path / 'reg4.pth'))


@pytest.mark.parametrize('name', ['vit_base_patch14_reg4_dinov2', 'deit3_small_patch16_224'])
@pytest.mark.parametrize('windows', [False, True])
@pytest.mark.parametrize('hw', ODD_SIZES[:3])
def test_pyramid_shapes_at_odd_sizes_batch_1(name, windows, hw):
    kwargs = dict(window_size=3, global_attn_indexes=(1,)) if windows else {}
    model = narrow(name, **kwargs).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *hw))
    assert [tuple(o.shape[1:]) for o in outs] == expected_shapes(*hw, CHANNELS)
    assert all(torch.isfinite(o).all() for o in outs)


def test_patch_14_grid_is_padded_not_resized():
    """70 x 60 pixels at patch 14: a 5 x 5 grid (60 padded to 70); the token map of a 70 x 70 image whose last
    10 columns are zero is the same."""
    model = narrow('vit_small_patch14_dinov2').eval()
    x = torch.randn(1, 3, 70, 60)
    with torch.no_grad():
        a = model.token_map(x)
        b = model.token_map(torch.nn.functional.pad(x, (0, 10)))
    assert a.shape == (1, 64, 5, 5) and torch.equal(a, b)


@pytest.mark.parametrize('name', ['vit_base_patch14_reg4_dinov2', 'eva02_small_patch14_224',
                                  'deit3_small_patch16_224'])
def test_one_window_over_the_whole_grid_is_global_attention(name):
    """Windows whose one window covers the grid (with padding masked for patch 16's 5 x 4 grid) compute global
    attention exactly, prefix tokens (class, registers) and RoPE included."""
    torch.manual_seed(0)
    plain = narrow(name).eval()
    windowed = narrow(name, window_size=5).eval()
    windowed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 70, 60)
    with torch.no_grad():
        a = plain.run_blocks(plain.embed_tokens(x))
        b = windowed.run_blocks(windowed.embed_tokens(x))
    assert rel_err(b.patches, a.patches) <= 1e-6 and rel_err(b.prefix, a.prefix) <= 1e-6


def test_windowed_block_is_local_and_prefix_tokens_see_every_window():
    """A windowed block: a change inside one 2 x 2 window moves that window's tokens and the prefix tokens (they
    attend in every window), no other window's."""
    model = narrow('vit_base_patch14_reg4_dinov2', window_size=2).eval()
    model.load_state_dict(randomize(model.state_dict()))  # layer scales of 0.05, not timm's 1e-5 init
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        tokens = model.embed_tokens(x)
        moved = tokens._replace(patches=tokens.patches.clone())
        moved.patches[:, 0] += torch.randn(64)  # grid cell (0, 0): window (0, 0)
        a, b = model.run_blocks(tokens, 0, 1), model.run_blocks(moved, 0, 1)
    diff = (a.patches - b.patches).abs().amax(-1).reshape(4, 4)
    assert diff[:2, :2].min() > 0 and diff[2:].max() == 0 and diff[:, 2:].max() == 0
    assert (a.prefix - b.prefix).abs().amax() > 0
    # the prefix outputs are the mean of what timm's block gives them in each window (class + 4 registers)
    block, grid = model.vit.blocks[0], tokens.patches.reshape(1, 4, 4, 64)
    with torch.no_grad():
        per_window = [block(torch.cat([tokens.prefix, grid[:, r:r + 2, c:c + 2].reshape(1, 4, 64)], dim=1))
                      for r in (0, 2) for c in (0, 2)]
    assert tokens.prefix.shape == (1, 5, 64)
    torch.testing.assert_close(a.prefix, torch.stack([w[:, :5] for w in per_window]).mean(0))
    torch.testing.assert_close(a.patches.reshape(1, 4, 4, 64)[:, 2:, :2], per_window[2][:, 5:].reshape(1, 2, 2, 64))


def test_token_api_runs_blocks_in_pieces():
    """embed_tokens / run_blocks(i, j) / apply_final_norm compose to token_map (what an adapter builds on)."""
    model = narrow('eva02_small_patch14_224', window_size=2, global_attn_indexes=(1,), final_norm=True).eval()
    assert (model.embed_dim, model.patch_size, model.num_blocks, model.num_prefix_tokens) == (64, 14, 2, 1)
    x = torch.randn(1, 3, 60, 90)
    with torch.no_grad():
        tokens = model.embed_tokens(x)
        assert tokens.grid == (5, 7) and tokens.patches.shape == (1, 35, 64) and tokens.prefix.shape == (1, 1, 64)
        tokens = model.apply_final_norm(model.run_blocks(model.run_blocks(tokens, 0, 1), 1, 2))
        want = model.token_map(x)
    assert torch.equal(tokens.patches.transpose(1, 2).reshape(1, 64, 5, 7), want)


def test_samvit_keeps_its_own_windows_unless_told():
    model = narrow('samvit_base_patch16')
    assert [b.window_size for b in model.vit.blocks] == [14, 14]
    model = narrow('samvit_base_patch16', window_size=3, global_attn_indexes=(1,))
    assert [b.window_size for b in model.vit.blocks] == [3, 0]
    assert narrow('vit_small_patch14_dinov2').block_windows == [0, 0]
    assert narrow('vit_small_patch14_dinov2', window_size=3, global_attn_indexes=(1,)).block_windows == [3, 0]


def test_frozen_stages_stem_then_blocks():
    model = narrow('vit_base_patch14_reg4_dinov2', frozen_stages=1)
    model.train()
    vit = model.vit
    frozen = [vit.cls_token, vit.reg_token, vit.pos_embed, *vit.patch_embed.parameters(),
              *vit.blocks[0].parameters()]
    assert all(not p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in vit.blocks[1].parameters())
    assert all(p.requires_grad for p in model.pyramid.parameters())
    assert not vit.blocks[0].training and vit.blocks[1].training
    sum(o.sum() for o in model(torch.randn(1, 3, 56, 56))).backward()
    assert all(p.grad is None for p in frozen)
    assert vit.blocks[1].attn.qkv.weight.grad is not None
    stem_only = narrow('vit_small_patch14_dinov2', frozen_stages=0)
    assert not stem_only.vit.pos_embed.requires_grad and stem_only.vit.blocks[0].attn.qkv.weight.requires_grad
    everything = narrow('vit_small_patch14_dinov2', frozen_stages=2, final_norm=True)
    assert not any(p.requires_grad for p in everything.vit.parameters())
    with pytest.raises(ConfigError, match=r'frozen_stages=3 must lie in -1..2'):
        narrow('vit_small_patch14_dinov2', frozen_stages=3)


def test_layer_depth_and_layer_decay_groups():
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    import vitdense.engine  # noqa: F401

    model = TimmViT('vit_small_patch14_dinov2', img_size=56, model_kwargs=dict(depth=4, embed_dim=64,
                                                                                num_heads=2))
    assert model.get_layer_depth('vit.pos_embed') == (0, 6)
    assert model.get_layer_depth('vit.cls_token') == (0, 6)
    assert model.get_layer_depth('vit.patch_embed.proj.weight') == (0, 6)
    assert model.get_layer_depth('vit.blocks.0.ls1.gamma') == (1, 6)
    assert model.get_layer_depth('vit.blocks.3.mlp.fc2.bias') == (4, 6)
    assert model.get_layer_depth('pyramid.levels.0.0.weight') == (5, 6)
    assert model.get_layer_depth('out_norms.3.weight') == (5, 6)
    assert model.get_layer_depth('vit.blocks.2.norm1.weight', 'stage_wise') == (3, 6)
    assert model.get_layer_depth('vit.pos_embed', 'stage_wise') == (0, 6)
    assert model.get_layer_depth('pyramid.levels.1.0.weight', 'stage_wise') == (5, 6)

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = model

    init_default_scope('mmdet')
    wrapper = build_optim_wrapper(Detector(), dict(
        type='OptimWrapper', constructor='vitdense.LayerDecayOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.1),
        paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise')))
    groups = {n: g for g in wrapper.optimizer.param_groups for n in g['param_names']}
    assert groups['backbone.vit.pos_embed']['lr'] == pytest.approx(1e-4 * 0.7 ** 5)
    assert groups['backbone.vit.pos_embed']['weight_decay'] == 0
    assert groups['backbone.vit.blocks.0.attn.qkv.weight']['lr'] == pytest.approx(1e-4 * 0.7 ** 4)
    assert groups['backbone.vit.blocks.3.mlp.fc1.weight']['lr'] == pytest.approx(1e-4 * 0.7)
    assert groups['backbone.pyramid.levels.0.0.weight']['lr'] == pytest.approx(1e-4)


def test_drop_path_is_timms_linear_rule():
    model = TimmViT('deit3_small_patch16_224', img_size=64, drop_path_rate=0.3,
                    model_kwargs=dict(depth=4, embed_dim=64, num_heads=2))
    rates = [getattr(b.drop_path1, 'drop_prob', 0.0) for b in model.vit.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_bad_settings_are_one_clear_line():
    with pytest.raises(ConfigError, match=r"'vit_smal_patch14_dinov2' is not a timm model; did you mean "
                                          r"vit_small_patch14_dinov2"):
        TimmViT('vit_smal_patch14_dinov2')
    with pytest.raises(ConfigError, match=r"'resnet18' is a timm.models.resnet model: use vitdense.TimmBackbone"):
        TimmViT('resnet18')
    with pytest.raises(ConfigError, match=r'global_attn_indexes \(5,\) must index blocks 0..1'):
        narrow('vit_small_patch14_dinov2', window_size=4, global_attn_indexes=(5,))
    with pytest.raises(ConfigError, match=r'samvit models have no final token norm'):
        narrow('samvit_base_patch16', final_norm=True)
    with pytest.raises(ValueError, match=r'smaller than its total stride 32'):
        narrow('vit_small_patch14_dinov2')(torch.randn(1, 3, 28, 64))


def test_simple_pyramid_from_stride_14_resamples_exactly():
    """out_strides from a stride-14 map: ViTDet's power-of-two operation, then cell-centre-aligned resampling;
    the stride-16 level of a stride-14 map is the bilinear resampling by 14 / 16 of the map itself."""
    from vitdense.models.layers import resample_to_stride
    pyramid = SimpleFeaturePyramid(64, input_stride=14, out_strides=(4, 8, 16, 32))
    assert pyramid.channels == [16, 32, 64, 64] and pyramid.op_strides == (3.5, 7.0, 14.0, 28.0)
    x = torch.randn(1, 64, 5, 7)
    outs = pyramid(x, image_size=(61, 90))
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 23), (8, 12), (4, 6), (2, 3)]
    assert torch.equal(outs[2], resample_to_stride(x, 14, 16, (4, 6)))
    # a uniform map stays uniform (aligned resampling, edge cells replicated)
    flat = torch.ones(1, 64, 5, 7)
    assert torch.allclose(pyramid(flat, image_size=(61, 90))[2], torch.ones(1, 64, 4, 6))
    # patch 32 and patch 8 token maps: x8 (three deconvolutions) and /4
    assert SimpleFeaturePyramid(64, input_stride=32, out_strides=(4, 8, 16, 32)).channels == [8, 16, 32, 64]
    coarse = SimpleFeaturePyramid(64, input_stride=8, out_strides=(4, 8, 16, 32))
    assert [tuple(o.shape[-2:]) for o in coarse(torch.randn(1, 64, 9, 9), image_size=(70, 70))] == \
        [(18, 18), (9, 9), (5, 5), (3, 3)]


# ---- configs -------------------------------------------------------------------------------------------------
TIMM_VIT_CONFIGS = sorted(glob.glob(os.path.join(REPO, 'configs', 'timm_vit', '*.py')))


def test_configs_follow_their_recipes():
    """(Every config's channels against its heads: tests/test_configs.py.)"""
    from mmengine.config import Config

    assert len(TIMM_VIT_CONFIGS) == 11
    for path in TIMM_VIT_CONFIGS:
        cfg = Config.fromfile(path)
        backbone, name = cfg.model.backbone, os.path.basename(path)
        assert backbone.type == 'vitdense.TimmViT', name
        assert cfg.optim_wrapper.constructor == 'vitdense.LayerDecayOptimWrapperConstructor', name
        if 'mini' in name:
            assert backbone.init_cfg.checkpoint is None, name
            continue
        expected_model = {'dinov2-s': 'vit_small_patch14_dinov2', 'dinov2-b': 'vit_base_patch14_dinov2',
                          'eva02-s': 'eva02_small_patch14_224'}
        assert [v for k, v in expected_model.items() if f'_{k}-' in name] == [backbone.model_name], name
        if cfg.default_scope == 'mmdet':  # ViTDet / EVA-02: windows + 4 global blocks, layer decay 0.7
            assert backbone.window_size == (16 if 'eva02' in name else 14), name
            assert tuple(backbone.global_attn_indexes) == (2, 5, 8, 11), name
            assert cfg.optim_wrapper.paramwise_cfg.decay_rate == 0.7 and backbone.drop_path_rate == 0.1, name
        else:  # ViT-Adapter's UperNet recipe, global attention
            assert backbone.get('window_size') is None, name
            assert cfg.optim_wrapper.paramwise_cfg.decay_rate == 0.95, name
            assert cfg.optim_wrapper.optimizer.lr == 6e-5, name
            assert backbone.drop_path_rate == (0.3 if 'dinov2-b' in name else 0.1), name
        if 'eva02' in name:
            assert backbone.model_kwargs == dict(patch_size=16), name


def narrow_config(name):
    from mmengine.config import Config
    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'timm_vit', name))
    # the mini config's model with a narrow DINOv2-reg4 (registers: the prefix tokens in windows learn too)
    cfg.model.backbone.update(model_name='vit_base_patch14_reg4_dinov2', img_size=56, model_kwargs=dict(NARROW))
    if cfg.model.backbone.get('window_size'):
        cfg.model.backbone.update(window_size=3, global_attn_indexes=(1,))
    return cfg


def test_mask_rcnn_mini_training_step():
    cfg = narrow_config('mask-rcnn_dinov2-s-p14-w14_fpn_mini-coco.py')
    cfg.model.neck.in_channels = CHANNELS
    model = build_model(cfg)
    vit = model.backbone.vit
    training_step(model, cfg.optim_wrapper, det_batch(model, (100, 132)),
                  [vit.blocks[0].attn.qkv.weight, vit.blocks[1].mlp.fc1.weight, vit.reg_token, vit.cls_token,
                   vit.pos_embed, model.backbone.pyramid.levels[0][0].weight])


def test_upernet_mini_training_step():
    cfg = narrow_config('upernet_dinov2-s-p14_mini-ade20k.py')
    cfg.model.decode_head.in_channels = CHANNELS
    cfg.model.auxiliary_head.in_channels = CHANNELS[2]
    model = build_model(cfg)
    model.data_preprocessor.size, model.data_preprocessor.size_divisor = None, 32  # keep the step small
    vit = model.backbone.vit
    training_step(model, cfg.optim_wrapper, seg_batch(model, (70, 98)),
                  [vit.blocks[0].attn.qkv.weight, vit.blocks[1].ls2.gamma, vit.reg_token, vit.pos_embed])


def test_official_dinov2_layout_with_registers_loads_through_timms_filter(tmp_path):
    """facebookresearch/dinov2's layout (register_tokens, a class-token position inside pos_embed, mask_token):
    mapped by timm's own filter, the tokens are timm's for the same network."""
    ref = saved_timm('vit_base_patch14_reg4_dinov2', tmp_path / 'timm.pth')
    sd = torch.load(tmp_path / 'timm.pth')
    cls_pos = torch.randn(1, 1, 64) * 0.05
    official = {k: v for k, v in sd.items() if k not in ('reg_token', 'cls_token', 'pos_embed')}
    official.update(register_tokens=sd['reg_token'], cls_token=sd['cls_token'] - cls_pos,
                    pos_embed=torch.cat([cls_pos, sd['pos_embed']], dim=1), mask_token=torch.zeros(1, 64))
    torch.save(official, tmp_path / 'official.pth')
    model = narrow('vit_base_patch14_reg4_dinov2')
    report = load_pretrained(model, str(tmp_path / 'official.pth'))
    assert any("timm.models.vision_transformer.checkpoint_filter_fn" in n for n in report.notes)
    assert 'mask_token' in report.adaptation.dropped and not report.dropped
    assert report.adaptation.renamed['vit.reg_token'] == 'register_tokens'
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        assert rel_err(model.eval().token_map(x), timm_last_map(ref, x)) <= 1e-5
