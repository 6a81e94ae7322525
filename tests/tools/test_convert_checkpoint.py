"""tools/convert_checkpoint.py: ImageNet / classifier / detector checkpoints -> backbone checkpoints for a config."""
import importlib.util
import os

import pytest
import timm
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from tests.conftest import REPO, randomize
from vitdense.checkpoint import load_pretrained
from vitdense.models.backbones import SwinTransformer, TimmBackbone

SWIN_SEG = os.path.join(REPO, 'configs', 'swin', 'upernet_swin-t-p4-w7_mini-ade20k.py')
EFFNET_DET = os.path.join(REPO, 'configs', 'timm', 'mask-rcnn_tf-efficientnet-lite0_fpn_mini-coco.py')
EFFNET_CLS = os.path.join(REPO, 'configs', 'timm', 'tf-efficientnet-lite0_mini-coco-crops.py')


def tool():
    spec = importlib.util.spec_from_file_location('convert_checkpoint',
                                                  os.path.join(REPO, 'tools', 'convert_checkpoint.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def timm_swin_t():
    """A timm Swin-T ImageNet classifier state dict (random values, real names and shapes, head included)."""
    return randomize(timm.create_model('swin_tiny_patch4_window7_224').state_dict(), seed=1)


def test_official_wrapped_timm_swin_to_window_12(tmp_path, capsys, timm_swin_t):
    torch.save({'model': timm_swin_t}, tmp_path / 'swin_t.pth')
    dst = tmp_path / 'swin_t_w12.pth'
    rc = tool().main([str(tmp_path / 'swin_t.pth'), str(dst), '--config', SWIN_SEG,
                      '--cfg-options', 'model.backbone.window_size=12'])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert '12 relative_position_bias_tables interpolated from window 7 to (12, 12)' in out
    assert 'dropped (in SRC, no place in the backbone) (' in out
    dropped = out.split('dropped (in SRC, no place in the backbone) (')[1].split('\n')[0]
    assert 'norm.weight, norm.bias, head.fc.weight, head.fc.bias' in dropped
    assert 'missing (left at their initialisation) (8): out_norms.0.weight' in out
    saved = torch.load(dst, weights_only=True)
    sd = saved['state_dict']
    assert saved['meta']['backbone'] == 'SwinTransformer'
    assert not any(k.startswith(('head.', 'norm.')) for k in sd)
    assert sd['layers.2.blocks.3.attn.relative_position_bias_table'].shape == (23 * 23, 12)
    assert torch.equal(sd['layers.2.blocks.3.attn.qkv.weight'], timm_swin_t['layers.2.blocks.3.attn.qkv.weight'])
    assert torch.equal(sd['layers.1.downsample.reduction.weight'], timm_swin_t['layers.1.downsample.reduction.weight'])
    # what load_pretrained reads as it is: nothing to remap, nothing dropped
    report = load_pretrained(SwinTransformer(window_size=12), str(dst), logger='silent')
    assert report.dropped == [] and report.notes == [] and len(report.loaded) == len(sd)


def test_whole_detector_checkpoint_is_detected_and_explained(tmp_path, capsys, timm_swin_t):
    detector = {f'backbone.{k}': v for k, v in timm_swin_t.items() if not k.startswith(('head.', 'norm.'))}
    detector.update({'neck.lateral_convs.0.conv.weight': torch.zeros(256, 96, 1, 1),
                     'rpn_head.rpn_conv.weight': torch.zeros(256, 256, 3, 3),
                     'roi_head.bbox_head.fc_cls.weight': torch.zeros(81, 1024)})
    torch.save({'state_dict': detector, 'meta': {'iter': 10}}, tmp_path / 'mask_rcnn.pth')
    rc = tool().main([str(tmp_path / 'mask_rcnn.pth'), str(tmp_path / 'bb.pth'), '--config', SWIN_SEG])
    out = capsys.readouterr().out
    assert rc == 0
    assert 'SRC is a whole detection / segmentation model (backbone, neck, roi_head, rpn_head)' in out
    assert 'tools/test.py' in out
    sd = torch.load(tmp_path / 'bb.pth', weights_only=True)['state_dict']
    assert torch.equal(sd['layers.3.blocks.1.mlp.fc2.weight'], timm_swin_t['layers.3.blocks.1.mlp.fc2.weight'])
    assert not any(k.startswith(('neck', 'rpn_head', 'roi_head', 'backbone.')) for k in sd)


def test_vitdense_classifier_checkpoint_to_a_detection_backbone(tmp_path, capsys):
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(EFFNET_CLS)
    init_default_scope(cfg.default_scope)
    classifier = MODELS.build(cfg.model)
    trained = randomize(classifier.state_dict(), seed=2)
    torch.save({'state_dict': trained, 'meta': {}}, tmp_path / 'cls.pth')
    rc = tool().main([str(tmp_path / 'cls.pth'), str(tmp_path / 'bb.pth'), '--config', EFFNET_DET])
    out = capsys.readouterr().out
    assert rc == 0
    assert "SRC is a classifier (backbone, head): its 'backbone.' weights are converted" in out
    sd = torch.load(tmp_path / 'bb.pth', weights_only=True)['state_dict']
    trunk = [k for k in trained if k.startswith('backbone.trunk.')]
    assert len(sd) == len(trunk)  # the head and the (cls) output norms are not taken; det out norms are missing
    assert torch.equal(sd['trunk.blocks.5.2.conv_dw.weight'], trained['backbone.trunk.blocks.5.2.conv_dw.weight'])
    detector_backbone = TimmBackbone('tf_efficientnet_lite0', out_norm=True)
    report = load_pretrained(detector_backbone, str(tmp_path / 'bb.pth'), logger='silent')
    assert report.dropped == [] and all(k.startswith('out_norms.') for k in report.missing)


def test_wrong_family_and_help(tmp_path, capsys, timm_swin_t):
    torch.save(timm_swin_t, tmp_path / 'swin.pth')
    rc = tool().main([str(tmp_path / 'swin.pth'), str(tmp_path / 'x.pth'), '--config', EFFNET_DET])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error:')]
    assert rc == 2 and len(errors) == 1  # (import-time library warnings aside)
    assert errors[0].startswith('error: the checkpoint matches the timm trunk neither by name nor by order and shape')
    assert not (tmp_path / 'x.pth').exists()
    rc = tool().main([str(tmp_path / 'nope.pth'), str(tmp_path / 'x.pth'), '--config', SWIN_SEG])
    assert rc == 2 and 'checkpoint not found' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool().parse_args(['--help'])
    assert 'whole vitdense / mmdet / mmseg detector' in capsys.readouterr().out
