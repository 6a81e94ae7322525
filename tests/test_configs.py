"""Every config in configs/ builds, its backbone's channels match the head's, and every mini config (one per
backbone x task) runs a forward + backward on a small input."""
import glob
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from tests.conftest import REPO, build_model, det_batch, seg_batch

CONFIGS = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, 'configs', '*', '*.py'))
                 if '_base_' not in p)
MINI = [c for c in CONFIGS if 'mini' in c]


def build(path):
    cfg = Config.fromfile(os.path.join(REPO, path))
    return cfg, build_model(cfg)


def head_in_channels(cfg):
    if cfg.model.get('neck') and 'in_channels' in cfg.model.neck:  # FPN (detection, Semantic FPN)
        return list(cfg.model.neck.in_channels)
    if cfg.default_scope == 'mmpretrain':
        return [cfg.model.head.in_channels]
    return list(cfg.model.decode_head.in_channels)


def test_configs_found():
    assert len(CONFIGS) >= 22 and len(MINI) >= 4


@pytest.mark.parametrize('path', CONFIGS)
def test_config_builds_and_channels_match(path):
    cfg, model = build(path)
    assert type(model.backbone).__module__.startswith('vitdense.'), 'configs must use vitdense backbones'
    model.backbone.eval()
    with torch.no_grad():
        outs = model.backbone(torch.randn(1, 3, 64, 96))
    assert [o.shape[1] for o in outs] == head_in_channels(cfg)
    aux = cfg.model.get('auxiliary_head')
    if aux is not None:  # mmseg's FCN auxiliary head reads one level
        assert aux.in_channels == outs[aux.in_index].shape[1]
    strides = [model.backbone.strides[i] for i in model.backbone.out_indices]
    assert [tuple(o.shape[-2:]) for o in outs] == [(-(-64 // s), -(-96 // s)) for s in strides]


def cls_batch(model, num_classes, batch_size=2):
    from mmpretrain.structures import DataSample
    samples = [DataSample().set_gt_label(i % num_classes) for i in range(batch_size)]
    inputs = [torch.randint(0, 255, (3, 96, 96), dtype=torch.uint8) for _ in range(batch_size)]
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)


@pytest.mark.parametrize('path', MINI)
def test_mini_config_forward_backward(path):
    torch.manual_seed(0)
    cfg, model = build(path)
    if cfg.default_scope == 'mmseg':
        model.data_preprocessor.size, model.data_preprocessor.size_divisor = None, 32  # keep the step small
    model.train()
    if cfg.default_scope == 'mmdet':
        data = det_batch(model)
    elif cfg.default_scope == 'mmseg':
        data = seg_batch(model)
    else:
        data = cls_batch(model, cfg.model.head.num_classes)
    losses = model(**data, mode='loss')
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(v) for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total) and total > 0
    total.backward()
    first = next(p for p in model.backbone.parameters() if p.requires_grad)
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_mini_configs_start_from_scratch_and_take_a_checkpoint_from_the_command_line(tmp_path):
    from mmdet.registry import MODELS
    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'swin', 'mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py'))
    init_default_scope('mmdet')
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint=None)
    backbone = MODELS.build(cfg.model.backbone)
    backbone.init_weights()                        # checkpoint None: the backbone's own initialisation
    state = backbone.state_dict()
    path = str(tmp_path / 'backbone.pth')
    torch.save(state, path)
    # what --cfg-options model.backbone.init_cfg.checkpoint=PATH does: merge into the dict the mini inherits
    cfg.merge_from_dict({'model.backbone.init_cfg.checkpoint': path})
    torch.manual_seed(123)
    loaded = MODELS.build(cfg.model.backbone)
    assert not torch.equal(loaded.state_dict()['layers.0.blocks.0.attn.qkv.weight'],
                           state['layers.0.blocks.0.attn.qkv.weight'])
    loaded.init_weights()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
