import glob
import os

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed

from tests.conftest import (REPO, ODD_SIZES, build_model, config_backbone, det_batch, expected_shapes, randomize,
                            rel_err, saved_random_timm, training_step)
from vitdense.checkpoint import CheckpointError, load_pretrained
from vitdense.models.backbones import VisionTransformer

# DeiT-T width with 4 blocks: the layout of the real archs at a fraction of the CPU time
TINY4 = dict(embed_dim=192, depth=4, num_heads=3)
TINY4_CHANNELS = [48, 96, 192, 192]


def random_timm(name, seed=0, **kwargs):
    ref = timm.create_model(name, **kwargs).eval()
    sd = randomize(ref.state_dict(), seed=seed)
    ref.load_state_dict(sd)
    return ref, sd


def timm_normed(tokens, ref):
    """Our pre-norm tokens through timm's final norm: comparable with timm's forward_features."""
    return F.layer_norm(tokens, tokens.shape[-1:], ref.norm.weight, ref.norm.bias, ref.norm.eps)


def test_timm_state_dicts_load_without_renaming():
    """DeiT-T/S/B and AugReg ViT-S/B: every timm trunk tensor has the same name and shape here (built on the
    meta device: shapes only, no memory or init time)."""
    for name, arch in [('deit_tiny_patch16_224', 'tiny'), ('deit_small_patch16_224', 'small'),
                       ('deit_base_patch16_224', 'base'), ('vit_small_patch16_224', 'small'),
                       ('vit_base_patch16_224', 'base')]:
        with torch.device('meta'):
            ref_sd = timm.create_model(name).state_dict()
            ours = VisionTransformer(arch).state_dict()
        trunk = {k: v.shape for k, v in ref_sd.items() if not k.startswith(('head.', 'norm.'))}
        assert trunk == {k: v.shape for k, v in ours.items() if not k.startswith(('pyramid.', 'out_norms.'))}
        assert {k for k in ref_sd if k not in trunk} == {'head.weight', 'head.bias', 'norm.weight', 'norm.bias'}


def test_token_parity_with_timm_same_weights():
    ref, sd = random_timm('deit_small_patch16_224', num_classes=10, depth=6)  # DeiT-S, half the depth
    ours = VisionTransformer(dict(embed_dim=384, depth=6, num_heads=6), drop_path_rate=0.0).eval()
    result = ours.load_state_dict(ours.adapt_checkpoint(sd).state_dict, strict=False)
    assert not result.unexpected_keys
    assert all(k.startswith(('pyramid.', 'out_norms.')) for k in result.missing_keys)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        tokens, hw = ours.forward_tokens(x)
        assert hw == (14, 14) and tokens.shape == (2, 197, 384)
        assert rel_err(timm_normed(tokens, ref), ref.forward_features(x)) <= 1e-5


def test_pos_embed_224_checkpoint_at_512x640_runtime_and_load_time(tmp_path):
    ref, sd = random_timm('deit_tiny_patch16_224', seed=3, depth=4, dynamic_img_size=True)
    path = tmp_path / 'deit_tiny_patch16_224.pth'
    torch.save({'model': sd}, path)  # the official DeiT release wraps its state dict in 'model'
    at_runtime = VisionTransformer(TINY4, img_size=224, drop_path_rate=0.0).eval()
    load_pretrained(at_runtime, str(path))
    at_load = VisionTransformer(TINY4, img_size=(512, 640), drop_path_rate=0.0).eval()
    report = load_pretrained(at_load, str(path))
    assert 'pos_embed interpolated from 14x14 to 32x40' in report.notes
    assert 'classifier parts dropped: head, norm' in report.notes
    assert sorted({k.split('.')[0] for k in report.missing}) == ['out_norms', 'pyramid'] and not report.dropped
    expected = resample_abs_pos_embed(sd['pos_embed'], new_size=[32, 40], num_prefix_tokens=1)
    assert torch.allclose(at_load.pos_embed, expected)
    x = torch.randn(1, 3, 512, 640)
    with torch.no_grad():
        want = ref.forward_features(x)  # timm resamples the 14x14 table to 32x40 in its forward
        for model in (at_runtime, at_load):
            tokens, hw = model.forward_tokens(x)
            assert hw == (32, 40)
            assert rel_err(timm_normed(tokens, ref), want) <= 1e-5


def test_non_square_vitdense_checkpoint_reloads_and_other_grids_are_refused(tmp_path):
    """A model trained at a non-square img_size saves a 32x40 table: it loads back as it is (not read as a
    square), and a table of neither a square nor this model's size is one clear error."""
    torch.manual_seed(0)
    trained = VisionTransformer(TINY4, img_size=(512, 640), drop_path_rate=0.0)
    path = tmp_path / 'vit_512x640.pth'
    torch.save({'state_dict': trained.state_dict()}, path)
    again = VisionTransformer(TINY4, img_size=(512, 640), drop_path_rate=0.0)
    report = load_pretrained(again, str(path))
    assert not report.missing and not any('interpolated' in n for n in report.notes)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in trained.state_dict().items())
    other = VisionTransformer(TINY4, img_size=(256, 640), drop_path_rate=0.0)
    with pytest.raises(CheckpointError, match=r"pos_embed has 1281 positions and the checkpoint 1 prefix tokens: "
                                              r"neither a square grid nor this model's 16x40"):
        load_pretrained(other, str(path))


@pytest.mark.parametrize('hw', ODD_SIZES[:3])
@pytest.mark.parametrize('windowed', [False, True])
def test_pyramid_shapes_any_size(hw, windowed):
    kwargs = dict(with_cls_token=False, window_size=3, global_attn_indexes=(1, 3)) if windowed else {}
    model = VisionTransformer(TINY4, drop_path_rate=0.0, **kwargs).eval()
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        outs = model(x)
        tokens, (H, W) = model.forward_tokens(x)
    assert [tuple(o.shape[1:]) for o in outs] == expected_shapes(*hw, TINY4_CHANNELS)
    assert all(torch.isfinite(o).all() for o in outs)
    # the stride-16 level is the token map itself (then its norm)
    grid = tokens[:, model.num_prefix_tokens:].transpose(1, 2).reshape(1, -1, H, W)
    assert rel_err(outs[2], model.out_norms[2](grid)) <= 1e-6


def test_simple_feature_pyramid_levels_and_as_a_registered_neck():
    from vitdense.registry import MODELS
    x = torch.randn(2, 64, 7, 9)
    adapter = MODELS.build(dict(type='vitdense.SimpleFeaturePyramid', in_channels=64))
    with torch.no_grad():
        up4, up2, same, down2 = adapter(x, image_size=(97, 131))
    assert [tuple(o.shape[1:]) for o in (up4, up2, same, down2)] == expected_shapes(97, 131, [16, 32, 64, 64])
    assert torch.equal(same, x)
    assert torch.equal(down2, F.max_pool2d(x, 2, 2, ceil_mode=True))  # odd 7x9 -> 4x5, the last row kept
    # ViTDet's whole neck: 1x1 + 3x3 convolutions to out_channels on each level, after a backbone's tuple
    neck = MODELS.build(dict(type='vitdense.SimpleFeaturePyramid', in_channels=64, out_channels=32,
                             out_indices=(1, 2, 3)))
    assert isinstance(neck.levels[0], torch.nn.Identity) and neck.channels == [0, 32, 32, 32]
    with torch.no_grad():
        outs = neck((torch.randn(2, 8, 5, 5), x))
    assert [tuple(o.shape[1:]) for o in outs] == [(32, 14, 18), (32, 7, 9), (32, 4, 5)]


def test_windows_covering_the_map_equal_global_attention():
    windowed = VisionTransformer(TINY4, with_cls_token=False, window_size=14, global_attn_indexes=(1, 3),
                                 drop_path_rate=0.0).eval()
    plain = VisionTransformer(TINY4, with_cls_token=False, drop_path_rate=0.0).eval()
    plain.load_state_dict(windowed.state_dict())
    # 224: a 14x14 grid, exactly one window; 97x131: 7x9, padded to 14x14 inside (padded keys masked out)
    for hw in [(224, 224), (97, 131)]:
        x = torch.randn(1, 3, *hw)
        with torch.no_grad():
            for a, b in zip(windowed(x), plain(x)):
                assert rel_err(a, b) <= 1e-5
    small_windows = VisionTransformer(TINY4, with_cls_token=False, window_size=4, drop_path_rate=0.0).eval()
    small_windows.load_state_dict(windowed.state_dict())
    with torch.no_grad():
        assert rel_err(small_windows(x)[2], plain(x)[2]) > 1e-2


def test_windowed_attention_is_local():
    """All blocks windowed (2x2 tokens): changing the bottom-right 32x32 pixels of a 64x64 image changes its
    own window only; the top-left window's tokens stay exactly the same."""
    model = VisionTransformer(TINY4, with_cls_token=False, window_size=2, drop_path_rate=0.0).eval()
    x = torch.randn(1, 3, 64, 64)
    y = x.clone()
    y[..., 32:, 32:] = torch.randn(3, 32, 32)
    with torch.no_grad():
        a = model.forward_tokens(x)[0].view(1, 4, 4, -1)
        b = model.forward_tokens(y)[0].view(1, 4, 4, -1)
    assert torch.equal(a[:, :2, :2], b[:, :2, :2])
    assert rel_err(b[:, 2:, 2:], a[:, 2:, 2:]) > 1e-2


def test_frozen_stages_and_train_mode():
    with torch.device('meta'):
        assert VisionTransformer('tiny').block_stage == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    model = VisionTransformer(TINY4, frozen_stages=2, drop_path_rate=0.0)
    model.train()
    frozen = [model.cls_token, model.pos_embed, *model.patch_embed.parameters(), *model.blocks[0].parameters(),
              *model.blocks[1].parameters(), *model.pyramid.levels[0].parameters(),
              *model.out_norms[1].parameters()]
    assert all(not p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in model.blocks[2].parameters())
    assert not model.blocks[1].training and model.blocks[2].training
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    assert all(p.grad is None for p in frozen)
    assert model.blocks[2].attn.qkv.weight.grad is not None


def test_drop_path_linear_over_blocks():
    model = VisionTransformer('tiny', drop_path_rate=0.2)
    rates = [getattr(b.drop_path1, 'drop_prob', 0.0) for b in model.blocks]
    assert rates[0] == 0.0 and abs(rates[-1] - 0.2) < 1e-6
    assert all(b > a for a, b in zip(rates, rates[1:]))


def test_layer_depth_and_vitdet_layer_decay():
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    import vitdense.engine  # noqa: F401

    model = VisionTransformer('tiny')
    assert model.get_layer_depth('pos_embed') == (0, 14)
    assert model.get_layer_depth('cls_token') == (0, 14)
    assert model.get_layer_depth('patch_embed.proj.weight') == (0, 14)
    assert model.get_layer_depth('blocks.0.attn.qkv.weight') == (1, 14)
    assert model.get_layer_depth('blocks.11.mlp.fc2.bias') == (12, 14)
    assert model.get_layer_depth('pyramid.levels.0.0.weight') == (13, 14)
    assert model.get_layer_depth('out_norms.3.weight') == (13, 14)
    assert model.get_layer_depth('blocks.4.norm1.weight', 'stage_wise') == (2, 6)
    assert model.get_layer_depth('pyramid.levels.1.weight', 'stage_wise') == (5, 6)

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = model
            self.neck = torch.nn.Conv2d(192, 8, 1)

    init_default_scope('mmdet')
    wrapper = build_optim_wrapper(Detector(), dict(
        type='OptimWrapper', constructor='vitdense.LayerDecayOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.1),
        paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise')))
    groups = {n: g for g in wrapper.optimizer.param_groups for n in g['param_names']}
    # ViTDet: lr x 0.7 ** (num_layers + 1 - layer_id), layer_id 0 for embeddings, i + 1 for block i
    assert groups['backbone.pos_embed']['lr'] == pytest.approx(1e-4 * 0.7 ** 13)
    assert groups['backbone.pos_embed']['weight_decay'] == 0
    assert groups['backbone.blocks.0.attn.qkv.weight']['lr'] == pytest.approx(1e-4 * 0.7 ** 12)
    assert groups['backbone.blocks.11.mlp.fc1.weight']['lr'] == pytest.approx(1e-4 * 0.7)
    assert groups['backbone.blocks.11.mlp.fc1.weight']['weight_decay'] == pytest.approx(0.1)
    assert groups['backbone.pyramid.levels.0.0.weight']['lr'] == pytest.approx(1e-4)
    assert groups['neck.weight']['lr'] == pytest.approx(1e-4)


def test_bad_inputs_are_one_clear_line():
    with pytest.raises(ValueError, match=r'smaller than its total stride 32; resize or pad'):
        VisionTransformer(TINY4)(torch.randn(1, 3, 24, 64))
    with pytest.raises(ValueError, match=r'windowed attention has no place for a class token'):
        VisionTransformer(TINY4, window_size=14)
    with pytest.raises(ValueError, match=r'global_attn_indexes \(2, 5\) must index blocks 0..3'):
        VisionTransformer(TINY4, with_cls_token=False, window_size=14, global_attn_indexes=(2, 5))
    with pytest.raises(ValueError, match=r"unknown VisionTransformer arch 'huge'"):
        VisionTransformer('huge')
    with pytest.raises(ValueError, match=r'patch_size=8: the pyramid expects stride-16 tokens'):
        VisionTransformer(TINY4, patch_size=8)


def test_windowed_backbone_drops_class_token_and_distillation_token(tmp_path):
    ref, sd = random_timm('deit_tiny_distilled_patch16_224', depth=4)
    path = tmp_path / 'deit_tiny_distilled.pth'
    torch.save(sd, path)
    model = VisionTransformer(TINY4, with_cls_token=False, window_size=14, img_size=448)
    report = load_pretrained(model, str(path))
    assert 'DeiT distillation token and its position dropped' in report.notes
    assert any('class token and its position dropped' in n for n in report.notes)
    assert not report.dropped and model.pos_embed.shape == (1, 28 * 28, 192)
    patches = resample_abs_pos_embed(sd['pos_embed'][:, 2:], new_size=[28, 28], num_prefix_tokens=0)
    assert torch.allclose(model.pos_embed, patches)
    ceit_like = tmp_path / 'ceit.pth'
    torch.save({'i2t.proj.weight': torch.zeros(192, 64, 4, 4), 'pos_embed': torch.zeros(1, 197, 192)}, ceit_like)
    with pytest.raises(CheckpointError, match='this is a CeiT checkpoint'):
        load_pretrained(model, str(ceit_like))


# the detection / segmentation configs (configs/vit/ may also hold classification ones)
VIT_CONFIGS = sorted(p for pattern in ('mask-rcnn_*.py', 'upernet_*.py')
                     for p in glob.glob(os.path.join(REPO, 'configs', 'vit', pattern)))


def test_configs_use_layer_decay_and_vitdet_windows():
    """(Every config's channels against its heads: tests/test_configs.py.)"""
    from mmengine.config import Config

    assert len(VIT_CONFIGS) == 8
    for path in VIT_CONFIGS:
        cfg = Config.fromfile(path)
        backbone = cfg.model.backbone
        assert backbone.type == 'vitdense.VisionTransformer', path
        assert cfg.optim_wrapper.constructor == 'vitdense.LayerDecayOptimWrapperConstructor', path
        if cfg.default_scope == 'mmdet':
            assert backbone.window_size == 14 and tuple(backbone.global_attn_indexes) == (2, 5, 8, 11), path


def test_mask_rcnn_training_step_on_cpu():
    from mmengine.config import Config
    cfg = Config.fromfile(os.path.join(REPO, 'configs/vit/mask-rcnn_vit-s-p16-w14_fpn_mini-coco.py'))
    # the mini config's detector with a 4-block DeiT-T-wide ViT (ViT-S itself: tests/test_configs.py)
    cfg.model.backbone.update(arch=TINY4, global_attn_indexes=(1, 3))
    cfg.model.neck.in_channels = TINY4_CHANNELS
    model = build_model(cfg)
    # the relative position tables (ViTDet's, on in this config) of a window and a global block learn from zero
    blocks = model.backbone.blocks
    training_step(model, cfg.optim_wrapper, det_batch(model, (100, 132)),
                  [blocks[2].attn.qkv.weight, blocks[0].attn.rel_pos_h, blocks[3].attn.rel_pos_w])


def test_in1k_config_backbone_through_init_cfg_equals_timm_at_224(tmp_path):
    """The classifier config's backbone, a random timm vit_small_patch16_224 file loaded through its init_cfg:
    timm's last block token map at 224 (class token dropped; vitdense's fresh output norm)."""
    ref = saved_random_timm('vit_small_patch16_224', tmp_path / 'vit_s.pth', seed=2)
    ours = config_backbone('vit/vit-s-p16_in1k.py', tmp_path / 'vit_s.pth')
    assert ours.out_indices == (2,) and ours.num_prefix_tokens == 1
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        want = ref.forward_intermediates(x, intermediates_only=True)[-1]
        (level,) = ours(x)
    want = F.layer_norm(want.permute(0, 2, 3, 1), want.shape[1:2], eps=1e-6).permute(0, 3, 1, 2)
    assert level.shape == want.shape == (2, 384, 14, 14) and rel_err(level, want) <= 1e-5
