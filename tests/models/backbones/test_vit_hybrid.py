import glob
import os
from functools import partial

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import HybridEmbed, StdConv2dSame, resample_abs_pos_embed
from timm.models.resnetv2 import ResNetV2
from timm.models.vision_transformer import VisionTransformer as TimmVisionTransformer
from timm.models.vision_transformer_hybrid import checkpoint_filter_fn

from tests.conftest import (REPO, ODD_SIZES, build_model, config_backbone, det_batch, expected_shapes, randomize,
                            rel_err, saved_random_timm, seg_batch, training_step)
from vitdense.checkpoint import CheckpointError, load_pretrained
from vitdense.models.backbones import HybridVisionTransformer

# The R50+ViT-B/16 layout (3 ResNet stages, tokens at stride 16) narrowed and shortened for CPU tests:
# one bottleneck per stage, half the widths, a DeiT-T-wide 2-block transformer.
SMALL_R50_LAYOUT = dict(layers=(1, 1, 1), channels=(128, 256, 512), stem_channels=32, embed_dim=192, depth=2,
                        num_heads=3)
SMALL_CHANNELS = [128, 256, 192, 192]
TIMM_NAMES = {'vit_tiny_r_s16_p8': 'vit_tiny_r_s16_p8_224', 'vit_small_r26_s32': 'vit_small_r26_s32_224',
              'vit_base_r26_s32': 'vit_base_r26_s32_224', 'vit_base_r50_s16': 'vit_base_r50_s16_384',
              'vit_large_r50_s32': 'vit_large_r50_s32_224'}


@pytest.fixture(scope='module', autouse=True)
def _one_thread():
    """Convolutions on a shared 2-core machine run many times faster single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_timm_reference(img_size=224, seed=0, num_classes=0):
    """timm's hybrid ViT with the SMALL_R50_LAYOUT, built the way vision_transformer_hybrid builds its models
    (ResNetV2 without pre-activation, StdConv2dSame eps 1e-8, 'same' stem, HybridEmbed with 1x1 patches)."""
    cnn = ResNetV2(layers=(1, 1, 1), channels=(128, 256, 512), stem_chs=32, num_classes=0, global_pool='',
                   preact=False, stem_type='same', conv_layer=partial(StdConv2dSame, eps=1e-8))
    ref = TimmVisionTransformer(img_size=img_size, patch_size=1, embed_dim=192, depth=2, num_heads=3,
                                num_classes=num_classes, embed_layer=partial(HybridEmbed, backbone=cnn),
                                dynamic_img_size=True).eval()
    sd = randomize(ref.state_dict(), seed=seed)
    ref.load_state_dict(sd)
    return ref, sd


def timm_normed(tokens, ref):
    return F.layer_norm(tokens, tokens.shape[-1:], ref.norm.weight, ref.norm.bias, ref.norm.eps)


def loaded(arch, sd, **kwargs):
    model = HybridVisionTransformer(arch, drop_path_rate=0.0, **kwargs).eval()
    result = model.load_state_dict({k: v for k, v in sd.items() if not k.startswith(('norm.', 'head.'))},
                                   strict=False)
    assert not result.unexpected_keys and all(k.startswith(('out_norms.', 'pyramid.')) for k in result.missing_keys)
    return model


def test_timm_hybrid_state_dicts_load_without_renaming():
    """Every ResNetV2-based timm hybrid: the same trunk names and shapes (meta device: shapes only)."""
    for arch, name in TIMM_NAMES.items():
        with torch.device('meta'):
            ref_sd = timm.create_model(name).state_dict()
            ours = HybridVisionTransformer(arch, img_size=384 if name.endswith('384') else 224).state_dict()
        trunk = {k: v.shape for k, v in ref_sd.items() if not k.startswith(('head.', 'norm.'))}
        assert trunk == {k: v.shape for k, v in ours.items() if not k.startswith(('pyramid.', 'out_norms.'))}, arch


@pytest.mark.parametrize('hw', [(224, 224)] + ODD_SIZES[:3])
def test_parity_with_timm_and_exact_strides_r50_layout(hw):
    ref, sd = small_timm_reference()
    model = loaded(SMALL_R50_LAYOUT, sd)
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        want_tokens = ref.forward_features(x)  # resamples the 14x14 table to the grid, as ours does
        want_maps = ref.patch_embed.backbone.forward_intermediates(x, intermediates_only=True)[1:]
        maps, tokens, (H, W) = model.forward_tokens(x)
        outs = model(x)
    assert (H, W) == (-(-hw[0] // 16), -(-hw[1] // 16))
    assert rel_err(timm_normed(tokens, ref), want_tokens) <= 1e-5
    for ours, want in zip(maps, want_maps):
        assert rel_err(ours, want) <= 1e-5
    assert [tuple(o.shape[1:]) for o in outs] == expected_shapes(*hw, SMALL_CHANNELS)
    # levels: ResNet stages 1 and 2, the token map, its 2x2 max-pool (ceil mode), each through its norm
    grid = tokens[:, 1:].transpose(1, 2).reshape(1, -1, H, W)
    levels = [maps[0], maps[1], grid, F.max_pool2d(grid, 2, 2, ceil_mode=True)]
    for i, (out, level) in enumerate(zip(outs, levels)):
        assert rel_err(out, model.out_norms[i](level)) <= 1e-6


@pytest.mark.parametrize('arch,depth,hw,channels', [
    ('vit_tiny_r_s16_p8', 2, (97, 131), [64, 48, 96, 192]),      # stem only, 8x8 patches: deconv levels
    ('vit_small_r26_s32', 1, (50, 68), [256, 512, 1024, 384]),   # 4 ResNet stages, tokens at stride 32
    ('vit_base_r50_s16', 1, (32, 32), [256, 512, 768, 768]),     # the paper's R50+ViT-B/16 at the minimum size
])
def test_parity_with_registered_timm_hybrids(arch, depth, hw, channels):
    ref = timm.create_model(TIMM_NAMES[arch], depth=depth, dynamic_img_size=True, dynamic_img_pad=True).eval()
    sd = randomize(ref.state_dict(), seed=1)
    ref.load_state_dict(sd)
    model = loaded(dict(HybridVisionTransformer.arch_settings[arch], depth=depth), sd,
                   img_size=384 if arch == 'vit_base_r50_s16' else 224)
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        _, tokens, _ = model.forward_tokens(x)
        outs = model(x)
        assert rel_err(timm_normed(tokens, ref), ref.forward_features(x)) <= 1e-5
    assert model.num_features == channels
    assert [tuple(o.shape[1:]) for o in outs] == expected_shapes(*hw, channels)
    assert all(torch.isfinite(o).all() for o in outs)


def test_symmetric_padding_variant_keeps_exact_strides():
    """padding_same=False (PyTorch padding, timm's non-'same' hybrids): also ceil(H / stride) at every level,
    and a different function of the same weights."""
    same = HybridVisionTransformer(SMALL_R50_LAYOUT, drop_path_rate=0.0).eval()
    symmetric = HybridVisionTransformer(SMALL_R50_LAYOUT, padding_same=False, drop_path_rate=0.0).eval()
    symmetric.load_state_dict(same.state_dict())
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        outs, ref = symmetric(x), same(x)
    assert [tuple(o.shape[1:]) for o in outs] == expected_shapes(97, 131, SMALL_CHANNELS)
    assert rel_err(outs[0], ref[0]) > 1e-2


def test_384_checkpoint_pos_embed_at_other_sizes(tmp_path):
    ref, sd = small_timm_reference(img_size=384, seed=3, num_classes=10)  # 24x24 table + class token + head
    path = tmp_path / 'vit_r50_s16_384.pth'
    torch.save(sd, path)
    for img_size, grid in [(512, (32, 32)), (224, (14, 14))]:  # up, and down (antialiased, as timm's loader)
        model = HybridVisionTransformer(SMALL_R50_LAYOUT, img_size=img_size, drop_path_rate=0.0)
        report = load_pretrained(model, str(path))
        assert f'pos_embed interpolated from 24x24 to {grid[0]}x{grid[1]}' in report.notes
        assert 'classifier parts dropped: head, norm' in report.notes
        assert sorted({k.split('.')[0] for k in report.missing}) == ['out_norms'] and not report.dropped
        timm_at_size = small_timm_reference(img_size=img_size)[0]
        assert torch.allclose(model.pos_embed, checkpoint_filter_fn(dict(sd), timm_at_size)['pos_embed'])
    # run time: the 24x24 table resampled in the forward (ours and timm's), or once at load to the input's grid
    at_runtime = HybridVisionTransformer(SMALL_R50_LAYOUT, img_size=384, drop_path_rate=0.0,
                                         init_cfg=dict(type='Pretrained', checkpoint=str(path))).eval()
    at_runtime.init_weights()  # the config path: init_cfg -> vitdense.checkpoint.load_pretrained
    assert torch.equal(at_runtime.pos_embed, sd['pos_embed'])
    at_load = HybridVisionTransformer(SMALL_R50_LAYOUT, img_size=(256, 320), drop_path_rate=0.0).eval()
    load_pretrained(at_load, str(path))
    assert torch.allclose(at_load.pos_embed, resample_abs_pos_embed(sd['pos_embed'], [16, 20], num_prefix_tokens=1))
    x = torch.randn(1, 3, 256, 320)
    with torch.no_grad():
        want = ref.forward_features(x)
        for model in (at_runtime, at_load):
            assert rel_err(timm_normed(model.forward_tokens(x)[1], ref), want) <= 1e-5


def test_windowed_backbone_drops_class_token(tmp_path):
    _, sd = small_timm_reference(img_size=384, seed=4)
    path = tmp_path / 'hybrid.pth'
    torch.save({'state_dict': {'backbone.' + k: v for k, v in sd.items()}}, path)  # an mmdet-style checkpoint
    model = HybridVisionTransformer(SMALL_R50_LAYOUT, with_cls_token=False, window_size=7, global_attn_indexes=(1,))
    report = load_pretrained(model, str(path))
    assert any('class token and its position dropped' in n for n in report.notes)
    assert model.cls_token is None and model.pos_embed.shape == (1, 14 * 14, 192)
    patches = resample_abs_pos_embed(sd['pos_embed'][:, 1:], [14, 14], num_prefix_tokens=0)
    assert torch.allclose(model.pos_embed, patches)
    with torch.no_grad():
        assert [tuple(o.shape[1:]) for o in model.eval()(torch.randn(1, 3, 97, 131))] == \
            expected_shapes(97, 131, SMALL_CHANNELS)


def test_converter_refuses_other_families(tmp_path):
    model = HybridVisionTransformer(SMALL_R50_LAYOUT)
    plain = tmp_path / 'deit.pth'
    torch.save({'patch_embed.proj.weight': torch.zeros(192, 3, 16, 16), 'pos_embed': torch.zeros(1, 197, 192)},
               plain)
    with pytest.raises(CheckpointError, match='this is a plain ViT checkpoint'):
        load_pretrained(model, str(plain))
    other = tmp_path / 'swin.pth'
    torch.save({'layers.0.blocks.0.norm1.weight': torch.zeros(96)}, other)
    with pytest.raises(CheckpointError, match='not a hybrid ViT checkpoint'):
        load_pretrained(model, str(other))


def test_stages_frozen_stages_and_train_mode():
    with torch.device('meta'):
        units = HybridVisionTransformer('vit_base_r50_s16').stage_units
    assert units['patch_embed.backbone.stem'] == 0
    assert [units[f'patch_embed.backbone.stages.{j}'] for j in range(3)] == [1, 2, 3]
    assert units['blocks'] == units['pos_embed'] == units['patch_embed.proj'] == 3
    assert units['pyramid.levels.1'] == 4 and units['out_norms.3'] == 4
    with torch.device('meta'):
        tiny = HybridVisionTransformer('vit_tiny_r_s16_p8').stage_units  # stem output = level 0; tokens from 2 on
    assert tiny['patch_embed.backbone'] == 0 and tiny['blocks'] == 2 and tiny['pyramid.levels.1'] == 3

    model = HybridVisionTransformer(SMALL_R50_LAYOUT, frozen_stages=2, drop_path_rate=0.0)
    model.train()
    cnn = model.patch_embed.backbone
    frozen = [*cnn.stem.parameters(), *cnn.stages[0].parameters(), *cnn.stages[1].parameters(),
              *model.out_norms[0].parameters(), *model.out_norms[1].parameters()]
    trainable = [*cnn.stages[2].parameters(), model.pos_embed, model.cls_token, *model.blocks.parameters(),
                 *model.patch_embed.proj.parameters()]
    assert all(not p.requires_grad for p in frozen) and all(p.requires_grad for p in trainable)
    assert not cnn.stages[1].training and cnn.stages[2].training and model.blocks.training
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    assert all(p.grad is None for p in frozen) and all(p.grad is not None for p in trainable)

    model = HybridVisionTransformer(SMALL_R50_LAYOUT, frozen_stages=3)
    model.train()
    assert not model.pos_embed.requires_grad and not model.cls_token.requires_grad and not model.blocks.training
    assert all(not p.requires_grad for p in model.patch_embed.parameters())
    assert all(p.requires_grad for p in model.out_norms[3].parameters())


def test_drop_path_linear_over_transformer_blocks_only():
    with torch.device('meta'):
        model = HybridVisionTransformer('vit_base_r50_s16', drop_path_rate=0.2)
    rates = [getattr(b.drop_path1, 'drop_prob', 0.0) for b in model.blocks]
    assert rates[0] == 0.0 and abs(rates[-1] - 0.2) < 1e-6 and all(b > a for a, b in zip(rates, rates[1:]))
    assert not any('DropPath' in type(m).__name__ for m in model.patch_embed.modules())  # as timm's hybrids


def test_layer_depth_and_layer_decay():
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    import vitdense.engine  # noqa: F401

    with torch.device('meta'):
        model = HybridVisionTransformer('vit_base_r50_s16')
    depth = model.get_layer_depth
    assert depth('patch_embed.backbone.stem.conv.weight') == (0, 18)
    assert depth('patch_embed.backbone.stages.0.blocks.2.conv3.weight') == (1, 18)
    assert depth('patch_embed.backbone.stages.2.blocks.8.norm3.bias') == (3, 18)
    assert depth('patch_embed.proj.weight') == depth('pos_embed') == depth('cls_token') == (4, 18)
    assert depth('blocks.0.attn.qkv.weight') == (5, 18)
    assert depth('blocks.11.mlp.fc2.bias') == (16, 18)
    assert depth('out_norms.0.weight') == depth('pyramid.levels.1.weight') == (17, 18)
    assert depth('patch_embed.backbone.stem.conv.weight', 'stage_wise') == (0, 6)
    assert depth('patch_embed.backbone.stages.1.blocks.0.conv1.weight', 'stage_wise') == (2, 6)
    assert depth('blocks.7.norm1.weight', 'stage_wise') == depth('pos_embed', 'stage_wise') == (3, 6)
    assert depth('out_norms.0.weight', 'stage_wise') == (5, 6)
    with pytest.raises(ValueError, match="mode must be 'layer_wise' or 'stage_wise'"):
        depth('blocks.0.norm1.weight', 'block_wise')

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = HybridVisionTransformer(SMALL_R50_LAYOUT)  # 3 ResNet stages, 2 blocks: 8 depths
            self.neck = torch.nn.Conv2d(192, 8, 1)

    init_default_scope('mmdet')
    wrapper = build_optim_wrapper(Detector(), dict(
        type='OptimWrapper', constructor='vitdense.LayerDecayOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.1),
        paramwise_cfg=dict(decay_rate=0.5, decay_type='layer_wise')))
    groups = {n: g for g in wrapper.optimizer.param_groups for n in g['param_names']}
    lr = {n: g['lr'] for n, g in groups.items()}
    assert lr['backbone.patch_embed.backbone.stem.conv.weight'] == pytest.approx(1e-4 * 0.5 ** 7)
    assert lr['backbone.patch_embed.backbone.stages.2.blocks.0.conv2.weight'] == pytest.approx(1e-4 * 0.5 ** 4)
    assert lr['backbone.pos_embed'] == pytest.approx(1e-4 * 0.5 ** 3)
    assert groups['backbone.pos_embed']['weight_decay'] == 0
    assert lr['backbone.blocks.1.mlp.fc1.weight'] == pytest.approx(1e-4 * 0.5)
    assert lr['backbone.out_norms.2.weight'] == lr['neck.weight'] == pytest.approx(1e-4)


def test_bad_inputs_are_one_clear_line():
    with pytest.raises(ValueError, match=r'smaller than its total stride 32; resize or pad'):
        HybridVisionTransformer(SMALL_R50_LAYOUT)(torch.randn(1, 3, 31, 64))
    with pytest.raises(ValueError, match=r"unknown HybridVisionTransformer arch 'vit_base_r101_s16'"):
        HybridVisionTransformer('vit_base_r101_s16')
    with pytest.raises(ValueError, match=r'tokens at stride 8 \(ResNet stride 8 x patch 1\); the pyramid needs 16'):
        HybridVisionTransformer(dict(SMALL_R50_LAYOUT, layers=(1, 1), channels=(128, 256)))
    with pytest.raises(ValueError, match=r'windowed attention has no place for a class token'):
        HybridVisionTransformer(SMALL_R50_LAYOUT, window_size=14)
    with pytest.raises(ValueError, match=r'layers \(1, 1, 1\) and channels \(128, 256\) must be equally long'):
        HybridVisionTransformer(dict(SMALL_R50_LAYOUT, channels=(128, 256)))


HYBRID_CONFIGS = sorted(p for p in glob.glob(os.path.join(REPO, 'configs', 'vit_hybrid', '*.py'))
                        if os.path.basename(p).startswith(('mask-rcnn_', 'upernet_')))  # det / seg only


def test_configs_use_layer_decay_timm_normalisation_and_checkpoints():
    """(Every config's channels against its heads: tests/test_configs.py.)"""
    from mmengine.config import Config

    assert len(HYBRID_CONFIGS) == 8
    for path in HYBRID_CONFIGS:
        cfg = Config.fromfile(path)
        assert cfg.model.backbone.type == 'vitdense.HybridVisionTransformer', path
        assert cfg.optim_wrapper.constructor == 'vitdense.LayerDecayOptimWrapperConstructor', path
        assert list(cfg.model.data_preprocessor.std) == [127.5] * 3, path  # timm hybrids: mean = std = 0.5
        if 'mini' not in path:
            assert cfg.model.backbone.init_cfg.checkpoint.startswith('checkpoints/vit_'), path


def small_variant(cfg_backbone):
    """The mini config's backbone at SMALL_R50_LAYOUT (the configured R26+ViT-S: tests/test_configs.py)."""
    cfg_backbone.update(arch=SMALL_R50_LAYOUT, with_cls_token=False, window_size=4, global_attn_indexes=(1,))


def test_mask_rcnn_training_step_on_cpu():
    from mmengine.config import Config
    cfg = Config.fromfile(os.path.join(REPO, 'configs/vit_hybrid/mask-rcnn_vit-s-r26-s32_fpn_mini-coco.py'))
    small_variant(cfg.model.backbone)
    cfg.model.neck.in_channels = SMALL_CHANNELS
    model = build_model(cfg)
    watched = [model.backbone.blocks[1].attn.qkv.weight, model.backbone.patch_embed.backbone.stem.conv.weight]
    training_step(model, cfg.optim_wrapper, det_batch(model, (100, 132)), watched)


def test_upernet_training_step_on_cpu():
    from mmengine.config import Config
    cfg = Config.fromfile(os.path.join(REPO, 'configs/vit_hybrid/upernet_vit-s-r26-s32_mini-ade20k.py'))
    cfg.model.backbone.update(arch=SMALL_R50_LAYOUT)  # global attention and class token, as configured
    cfg.model.decode_head.in_channels = SMALL_CHANNELS
    cfg.model.auxiliary_head.in_channels = SMALL_CHANNELS[2]
    cfg.model.data_preprocessor.size = (80, 112)  # pad to the inputs' own size, not the 256 crop: a small step
    model = build_model(cfg)
    watched = [model.backbone.pos_embed, model.backbone.patch_embed.backbone.stages[0].blocks[0].conv1.weight]
    training_step(model, cfg.optim_wrapper, seg_batch(model, (80, 112)), watched)


def test_in1k_config_backbone_through_init_cfg_equals_timm_at_224(tmp_path):
    """The classifier config's backbone, a random timm vit_small_r26_s32_224 file loaded through its init_cfg:
    timm's last block token map at 224 (stride 32, class token dropped; vitdense's fresh output norm)."""
    ref = saved_random_timm('vit_small_r26_s32_224', tmp_path / 'r26_s32.pth', seed=2)
    ours = config_backbone('vit_hybrid/vit-s-r26-s32_in1k.py', tmp_path / 'r26_s32.pth')
    assert ours.out_indices == (3,)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        want = ref.forward_intermediates(x, intermediates_only=True)[-1]
        (level,) = ours(x)
    want = F.layer_norm(want.permute(0, 2, 3, 1), want.shape[1:2], eps=1e-6).permute(0, 3, 1, 2)
    assert level.shape == want.shape == (1, 384, 7, 7) and rel_err(level, want) <= 1e-5
