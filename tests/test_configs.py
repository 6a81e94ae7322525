"""Every config in configs/ builds, its backbone's channels match the head's, and every mini config (one per
backbone x task) runs a forward + backward on a small input."""
import copy
import functools
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
# The Cascade leaves all carry one head, checked against their Mask R-CNN siblings and mmdet's Cascade base
# below, so a full build (about a second each) is done for one per family; for the others the backbone, which
# the channel check reads, is built alone.
CASCADE = [c for c in CONFIGS if os.path.basename(c).startswith('cascade-mask-rcnn_')]
FULL_CASCADE = {min(c for c in CASCADE if os.path.dirname(c) == d) for d in {os.path.dirname(c) for c in CASCADE}}


def build(path):
    cfg = Config.fromfile(os.path.join(REPO, path))
    return cfg, build_model(cfg)


def built_backbone(path):
    """The config and its backbone: from the whole model built, or alone for the Cascade leaves outside
    FULL_CASCADE."""
    if path in CASCADE and path not in FULL_CASCADE:
        cfg = Config.fromfile(os.path.join(REPO, path))
        init_default_scope(cfg.default_scope)
        from mmdet.registry import MODELS
        return cfg, MODELS.build(cfg.model.backbone)
    cfg, model = build(path)
    return cfg, model.backbone


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
    cfg, backbone = built_backbone(path)
    assert type(backbone).__module__.startswith('vitdense.'), 'configs must use vitdense backbones'
    backbone.eval()
    with torch.no_grad():
        outs = backbone(torch.randn(1, 3, 64, 96))
    assert [o.shape[1] for o in outs] == head_in_channels(cfg)
    aux = cfg.model.get('auxiliary_head')
    if aux is not None:  # mmseg's FCN auxiliary head reads one level
        assert aux.in_channels == outs[aux.in_index].shape[1]
    strides = [backbone.strides[i] for i in backbone.out_indices]
    assert [tuple(o.shape[-2:]) for o in outs] == [(-(-64 // s), -(-96 // s)) for s in strides]


def cls_batch(model, num_classes, batch_size=2):
    from mmpretrain.structures import DataSample
    samples = [DataSample().set_gt_label(i % num_classes) for i in range(batch_size)]
    inputs = [torch.randint(0, 255, (3, 96, 96), dtype=torch.uint8) for _ in range(batch_size)]
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)


# the Cascade mini config's step is test_cascade_mini_training_step_trains_all_three_stages (all three stages checked)
@pytest.mark.parametrize('path', [c for c in MINI if c not in CASCADE])
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


# ---- Cascade Mask R-CNN and the detection-only heads -------------------------------------------------------
NOT_RECIPE = {'model', 'cascade_mask_rcnn', 'optim_wrapper'}


@functools.lru_cache(maxsize=None)
def load(path):
    return Config.fromfile(os.path.join(REPO, path))


def mmdet_base(name):
    """One of mmdet's shipped model bases, e.g. 'cascade-mask-rcnn_r50_fpn'."""
    import mmdet
    return Config.fromfile(os.path.join(os.path.dirname(mmdet.__file__), '.mim', 'configs', '_base_', 'models',
                                        f'{name}.py'))


def without(model, *dotted):
    """``model`` as a plain dict with the ``dotted`` keys removed."""
    model = copy.deepcopy(model.to_dict() if hasattr(model, 'to_dict') else model)
    model.pop('_scope_', None)  # set by mmengine on what a config inherits from mmdet::
    for key in dotted:
        *parents, last = key.split('.')
        node = model
        for p in parents:
            node = node[p]
        node.pop(last)
    return model


def test_every_mask_rcnn_coco_config_has_a_cascade_sibling():
    mask_rcnn = [c for c in CONFIGS if os.path.basename(c).startswith('mask-rcnn_') and c.endswith('_coco.py')]
    assert len(mask_rcnn) == 51
    assert sorted(c.replace('/mask-rcnn_', '/cascade-mask-rcnn_') for c in mask_rcnn) == \
        [c for c in CASCADE if 'mini' not in c]


@pytest.mark.parametrize('path', CASCADE)
def test_cascade_config_is_its_mask_rcnn_sibling_with_the_cascade_heads(path):
    cfg, sibling = load(path), load(path.replace('/cascade-mask-rcnn_', '/mask-rcnn_'))
    assert cfg.model.type == 'CascadeRCNN' and cfg.model.roi_head.type == 'CascadeRoIHead'
    for key in ('data_preprocessor', 'backbone', 'neck'):
        assert cfg.model[key] == sibling.model[key], key
    assert {k: v for k, v in cfg.items() if k not in NOT_RECIPE} == \
        {k: v for k, v in sibling.items() if k not in NOT_RECIPE}
    if '/convnext/' not in path:  # ConvNeXt's Cascade recipe has its own optimizer (next test)
        assert cfg.optim_wrapper == sibling.optim_wrapper


def test_cascade_heads_are_mmdets_cascade_base_with_the_official_4conv1fc_box_heads():
    cfg = load('configs/swin/cascade-mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py')
    reference = mmdet_base('cascade-mask-rcnn_r50_fpn').model
    assert without(cfg.model, 'backbone', 'neck.in_channels', 'roi_head.bbox_head') == \
        without(reference, 'backbone', 'neck.in_channels', 'roi_head.bbox_head')
    # the official Swin / ConvNeXt heads: 4 convs + 1 fc, class-specific GIoU regression of decoded boxes
    stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
    assert len(cfg.model.roi_head.bbox_head) == 3
    for head, stage_stds in zip(cfg.model.roi_head.bbox_head, stds):
        assert head.to_dict() == dict(
            type='ConvFCBBoxHead', num_shared_convs=4, num_shared_fcs=1, in_channels=256, conv_out_channels=256,
            fc_out_channels=1024, roi_feat_size=7, num_classes=80,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=stage_stds),
            reg_class_agnostic=False, reg_decoded_bbox=True, norm_cfg=dict(type='BN', requires_grad=True),
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='GIoULoss', loss_weight=10.0))


@pytest.mark.parametrize('name, lr, decay_rate, drop_path', [
    ('swin/cascade-mask-rcnn_swin-t-p4-w7', 1e-4, None, 0.2),
    ('swin/cascade-mask-rcnn_swin-s-p4-w7', 1e-4, None, 0.2),
    ('swin/cascade-mask-rcnn_swin-b-p4-w7', 1e-4, None, 0.3),
    ('convnext/cascade-mask-rcnn_convnext-t-p4-w7', 2e-4, 0.7, 0.4),
    ('convnext/cascade-mask-rcnn_convnext-s-p4-w7', 2e-4, 0.7, 0.6),
    ('convnext/cascade-mask-rcnn_convnext-b-p4-w7', 2e-4, 0.8, 0.7)])
def test_cascade_3x_configs_follow_the_published_recipes(name, lr, decay_rate, drop_path):
    """microsoft Swin-Transformer-Object-Detection and facebookresearch/ConvNeXt cascade_mask_rcnn_*_3x."""
    cfg = load(f'configs/{name}_fpn_ms-crop-3x_coco.py')
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('AdamW', lr, 0.05)
    assert cfg.optim_wrapper.get('paramwise_cfg', {}).get('decay_rate') == decay_rate
    assert cfg.model.backbone.drop_path_rate == drop_path
    assert cfg.train_cfg.max_epochs == 36 and cfg.param_scheduler[1].milestones == [27, 33]
    assert any(t.type == 'RandomChoice' for t in cfg.train_dataloader.dataset.pipeline)  # multi-scale + crop


@pytest.mark.parametrize('path, head, base, dropped', [
    ('swin/faster-rcnn_swin-t-p4-w7_fpn_1x_coco.py', 'FasterRCNN', 'faster-rcnn_r50_fpn', ()),
    ('convnext/faster-rcnn_convnext-t-p4-w7_fpn_1x_coco.py', 'FasterRCNN', 'faster-rcnn_r50_fpn', ()),
    ('swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py', 'RetinaNet', 'retinanet_r50_fpn', ('neck.start_level',)),
    ('convnext/retinanet_convnext-t-p4-w7_fpn_1x_coco.py', 'RetinaNet', 'retinanet_r50_fpn', ('neck.start_level',))])
def test_detection_only_configs_are_mmdets_heads_and_read_no_masks(path, head, base, dropped):
    cfg = load(f'configs/{path}')
    assert cfg.model.type == head
    assert without(cfg.model, 'backbone', 'neck.in_channels', *dropped) == \
        without(mmdet_base(base).model, 'backbone', 'neck.in_channels', *dropped)
    if head == 'RetinaNet':  # strides 8-32 in, P6 / P7 from the stride-32 input
        assert tuple(cfg.model.backbone.out_indices) == (1, 2, 3) and cfg.model.neck.start_level == 0
        assert cfg.model.neck.add_extra_convs == 'on_input' and cfg.model.neck.num_outs == 5
    for loader in ('train_dataloader', 'val_dataloader'):
        loads = [t for t in cfg[loader].dataset.pipeline if t.type == 'LoadAnnotations']
        assert loads and all(not t.get('with_mask', False) for t in loads)
    assert cfg.val_evaluator.metric == 'bbox'


def test_cascade_mini_training_step_trains_all_three_stages():
    torch.manual_seed(0)
    cfg, model = build('configs/swin/cascade-mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py')
    model.train()
    losses = model(**det_batch(model), mode='loss')
    for stage in range(3):
        assert {f's{stage}.loss_cls', f's{stage}.loss_bbox', f's{stage}.loss_mask'} <= set(losses)
        assert torch.isfinite(losses[f's{stage}.loss_bbox']) and losses[f's{stage}.loss_bbox'] > 0
    total, _ = model.parse_losses(losses)
    total.backward()
    for stage in range(3):  # every stage's 4conv1fc box head and mask head gets a gradient
        for head in (model.roi_head.bbox_head[stage], model.roi_head.mask_head[stage]):
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters()), (stage, head)
