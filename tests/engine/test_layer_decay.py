"""vitdense.LayerDecayOptimWrapperConstructor from detection, segmentation and classification configs: the
ViTDet (0.7) and ViT-Adapter (0.95) recipes on the ViT backbone, and inside a built ImageNet classifier."""
import os

import pytest
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import vitdense.engine  # noqa: F401  (registers the constructor)
from tests.conftest import REPO
from vitdense.models.backbones import TimmBackbone

OPTIMIZERS = os.path.join(REPO, 'configs', '_base_', 'optimizers')


class Dense(nn.Module):
    def __init__(self, backbone, channels):
        super().__init__()
        self.backbone = backbone
        self.neck = nn.Conv2d(channels, 8, 1)


def lr_and_wd(optim_wrapper):
    out = {}
    for group in optim_wrapper.optimizer.param_groups:
        for name in group['param_names']:
            out[name] = (group['lr'], group['weight_decay'])
    return out


def recipe(name):
    return Config.fromfile(os.path.join(OPTIMIZERS, name)).optim_wrapper.to_dict()


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_scoped_name_reachable_from_every_task(scope):
    pytest.importorskip(scope)
    init_default_scope(scope)
    model = Dense(TimmBackbone('test_efficientnet'), 64)
    groups = lr_and_wd(build_optim_wrapper(model, dict(
        type='OptimWrapper', constructor='vitdense.LayerDecayOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
        paramwise_cfg=dict(decay_rate=0.5, decay_type='stage_wise'))))
    # 5 feature levels + 1: stem level 0 -> 0.5 ** 5, level 3 -> 0.5 ** 2, neck -> full lr
    assert groups['backbone.trunk.conv_stem.weight'] == (pytest.approx(1e-3 * 0.5 ** 5), pytest.approx(0.05))
    assert groups['backbone.trunk.blocks.3.0.conv_pw.weight'][0] == pytest.approx(1e-3 * 0.5 ** 2)
    assert groups['neck.weight'][0] == pytest.approx(1e-3)
    assert groups['backbone.trunk.bn1.weight'][1] == 0


def small_vit(**kwargs):
    vit = pytest.importorskip('vitdense.models.backbones.vit',
                              reason='the ViT backbone (vitdense/models/backbones/vit.py) is not there yet')
    return vit.VisionTransformer(arch=dict(embed_dim=64, depth=12, num_heads=2), drop_path_rate=0.0, **kwargs)


def test_vitdet_recipe_layer_decay_07_on_vit():
    init_default_scope('mmdet')
    backbone = small_vit(with_cls_token=False, window_size=14, global_attn_indexes=(2, 5, 8, 11))
    groups = lr_and_wd(build_optim_wrapper(Dense(backbone, 64),
                                           recipe('adamw_vitdet-layer-decay-0.7_det.py')))
    # 14 depths: patch embed / pos embed 0, block i -> i + 1, pyramid + norms + neck 13; lr = 1e-4 * 0.7 ** (13 - d)
    assert groups['backbone.patch_embed.proj.weight'] == (pytest.approx(1e-4 * 0.7 ** 13), pytest.approx(0.1))
    assert groups['backbone.pos_embed'] == (pytest.approx(1e-4 * 0.7 ** 13), 0)
    for i in (0, 5, 11):
        assert groups[f'backbone.blocks.{i}.attn.qkv.weight'] == (pytest.approx(1e-4 * 0.7 ** (12 - i)),
                                                                   pytest.approx(0.1))
        assert groups[f'backbone.blocks.{i}.norm1.weight'][1] == 0
    pyramid = next(n for n in groups if n.startswith('backbone.pyramid.') and n.endswith('weight'))
    assert groups[pyramid][0] == pytest.approx(1e-4)
    assert groups['neck.weight'] == (pytest.approx(1e-4), pytest.approx(0.1))


def test_vit_adapter_recipe_layer_decay_095_on_vit():
    init_default_scope('mmseg')
    backbone = small_vit(img_size=256)
    groups = lr_and_wd(build_optim_wrapper(Dense(backbone, 64),
                                           recipe('adamw_vit-adapter-layer-decay-0.95_seg.py')))
    assert groups['backbone.cls_token'] == (pytest.approx(6e-5 * 0.95 ** 13), 0)
    assert groups['backbone.blocks.0.mlp.fc1.weight'] == (pytest.approx(6e-5 * 0.95 ** 12), pytest.approx(0.01))
    assert groups['backbone.blocks.11.mlp.fc2.weight'][0] == pytest.approx(6e-5 * 0.95)
    assert groups['neck.bias'] == (pytest.approx(6e-5), 0)


def test_layer_decay_inside_a_built_imagenet_classifier():
    """mmpretrain's ImageClassifier: the constructor finds ``model.backbone``; the head gets the full lr."""
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'convnext', 'convnext-t_mini-coco-crops.py'))
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    groups = lr_and_wd(build_optim_wrapper(model, recipe('adamw_layer-decay_det.py')))
    # ConvNeXt-T detection grouping (8 depths), decay 0.95
    assert groups['backbone.stem.0.weight'][0] == pytest.approx(1e-4 * 0.95 ** 7)
    assert groups['backbone.stages.2.blocks.4.mlp.fc1.weight'][0] == pytest.approx(1e-4 * 0.95 ** 3)
    assert groups['backbone.stages.3.blocks.2.conv_dw.weight'][0] == pytest.approx(1e-4 * 0.95)
    assert groups['head.fc.weight'] == (pytest.approx(1e-4), pytest.approx(0.05))
    assert groups['head.fc.bias'][1] == 0
    assert len(groups) == sum(p.requires_grad for p in model.parameters())
