"""The "your own dataset" configs (configs/custom/) as a user runs them: copy the config, edit its dataset block,
train a few iterations with tools/train.py on a dataset of their own classes, and read per-class results
under those class names."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO

COCO_MINI = os.path.join(REPO, 'data/mini/coco_val2017_mini')
ADE_MINI = os.path.join(REPO, 'data/mini/ade20k_mini/ADEChallengeData2016')


def user_config(tmp_path, name, dataset_block):
    """The config as a user's copy of configs/custom/<name>: dataset block edited, _base_ where the repo is."""
    text = open(os.path.join(REPO, 'configs/custom', name)).read()
    text = text.replace("'../", repr(os.path.join(REPO, 'configs')).rstrip("'") + "/")
    block = re.compile(r'# --- your dataset ---\n.*?\n# ---\n', re.S)
    assert block.search(text), name
    text = block.sub(lambda _: '# --- your dataset ---\n' + dataset_block + '# ---\n', text)
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def train(config, work_dir, options):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, 'tools/train.py'), config, '--work-dir', str(work_dir),
         '--cfg-options', 'model.backbone.init_cfg.checkpoint=None', 'train_dataloader.num_workers=0',
         'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
         'val_dataloader.persistent_workers=False', 'randomness.seed=0', 'default_hooks.logger.interval=1',
         'default_hooks.checkpoint.interval=1000', 'default_hooks.checkpoint.save_last=False', *options],
        capture_output=True, text=True, timeout=600, cwd=str(work_dir.parent),
        env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1'))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    return log


def table_rows(log, first_cell):
    """Rows of the logged per-class tables (mmdet's and mmseg's), keyed by their first cell."""
    rows = {}
    for line in log.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) > 1 and cells[0] in first_cell:
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture
def my_coco(tmp_path):
    """The bundled COCO image with a horse (and people) in a user's layout, person / horse renamed to
    pedestrian / pony."""
    data = json.load(open(os.path.join(COCO_MINI, 'instances_mini.json')))
    renamed = {'person': 'pedestrian', 'horse': 'pony'}
    for cat in data['categories']:
        cat['name'] = renamed.get(cat['name'], cat['name'])
    horse = next(c['id'] for c in data['categories'] if c['name'] == 'pony')
    with_horse = {a['image_id'] for a in data['annotations'] if a['category_id'] == horse}
    keep = [i for i in data['images'] if i['id'] in with_horse]
    assert len(keep) == 1
    keep_ids = {i['id'] for i in keep}
    root = tmp_path / 'my_coco'
    (root / 'images').mkdir(parents=True)
    (root / 'annotations').mkdir()
    for img in keep:
        name = os.path.basename(img['file_name'])
        shutil.copy(os.path.join(COCO_MINI, img['file_name']), root / 'images' / name)
        img['file_name'] = name
    data['images'] = keep
    data['annotations'] = [a for a in data['annotations'] if a['image_id'] in keep_ids]
    for split in ('train', 'val'):
        (root / 'annotations' / f'{split}.json').write_text(json.dumps(data))
    return root


DET_BLOCK = """data_root = '{root}/'
classes = ('pedestrian', 'pony')
train_ann, train_img = 'annotations/train.json', 'images/'
val_ann, val_img = 'annotations/val.json', 'images/'
"""
DET_OPTIONS = ['train_cfg.max_epochs=1', 'train_dataloader.batch_size=1', 'model.test_cfg.rpn.nms_pre=200',
               'model.test_cfg.rpn.max_per_img=100', 'train_dataloader.dataset.pipeline.2.scale=(256,192)',
               'val_dataloader.dataset.pipeline.1.scale=(256,192)']


@pytest.mark.parametrize('name, metrics', [('faster-rcnn_swin-t-p4-w7_fpn_1x_custom-coco.py', ['bbox']),
                                           ('mask-rcnn_swin-t-p4-w7_fpn_1x_custom-coco.py', ['bbox', 'segm'])])
def test_own_coco_dataset_trains_and_reports_its_classes(tmp_path, my_coco, name, metrics):
    config = user_config(tmp_path, name, DET_BLOCK.format(root=my_coco))
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    log = train(config, work_dir, DET_OPTIONS)
    assert 'Epoch(train) [1][1/1]' in log
    for metric in metrics:
        assert f'Evaluating {metric}...' in log
    assert 'Evaluating segm' in log if 'segm' in metrics else 'Evaluating segm' not in log
    # the classwise tables (one per metric) list exactly the user's classes, under the user's names
    rows = [line for line in log.splitlines() if re.match(r'^\|\s*(pedestrian|pony|person|horse)\s*\|', line)]
    assert len(rows) == 2 * len(metrics), log[-3000:]
    assert all('person' not in r and 'horse' not in r for r in rows)
    scalars = [json.loads(line) for line in open(next(work_dir.glob('*/vis_data/scalars.json')))]
    final = scalars[-1]
    for metric in metrics:
        assert f'coco/{metric}_mAP' in final, sorted(final)
    assert {'coco/pedestrian_precision', 'coco/pony_precision'} <= set(final), sorted(final)


@pytest.fixture
def my_seg(tmp_path):
    """The two bundled ADE20K pairs as a 3-class dataset: wall -> 1, tree / grass / plant -> 2, building / sky -> 3,
    everything else 0 (unlabelled); the validation image has all three."""
    lut = np.zeros(256, np.uint8)
    lut[1], lut[[5, 10, 18]], lut[[2, 3]] = 1, 2, 3
    root = tmp_path / 'my_seg'
    pairs = {'train': ['training', 'validation'], 'val': ['validation']}
    for split, sources in pairs.items():
        (root / 'images' / split).mkdir(parents=True)
        (root / 'annotations' / split).mkdir(parents=True)
        for source in sources:
            for img in os.listdir(os.path.join(ADE_MINI, 'images', source)):
                stem = os.path.splitext(img)[0]
                shutil.copy(os.path.join(ADE_MINI, 'images', source, img), root / 'images' / split / img)
                label = np.asarray(Image.open(os.path.join(ADE_MINI, 'annotations', source, stem + '.png')))
                Image.fromarray(lut[label]).save(root / 'annotations' / split / (stem + '.png'))
    return root


SEG_BLOCK = """data_root = '{root}/'
classes = ('my_wall', 'my_green', 'my_outdoors')
reduce_zero_label = True
img_suffix, seg_map_suffix = '.jpg', '.png'
train_img, train_seg = 'images/train', 'annotations/train'
val_img, val_seg = 'images/val', 'annotations/val'
"""


def test_own_segmentation_dataset_trains_and_reports_its_classes(tmp_path, my_seg):
    config = user_config(tmp_path, 'upernet_swin-t-p4-w7_160k_custom-seg-512x512.py', SEG_BLOCK.format(root=my_seg))
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    log = train(config, work_dir, [
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
        'train_dataloader.batch_size=2', 'model.data_preprocessor.size=(128,128)',
        'train_dataloader.dataset.pipeline.2.scale=(256,128)',
        'train_dataloader.dataset.pipeline.3.crop_size=(128,128)',
        'val_dataloader.dataset.pipeline.1.scale=(256,128)'])
    assert 'Iter(train) [2/2]' in log
    rows = table_rows(log, ('my_wall', 'my_green', 'my_outdoors', 'wall', 'tree', 'sky'))
    assert set(rows) == {'my_wall', 'my_green', 'my_outdoors'}, log[-3000:]
    # IoU / Acc are numbers; the validation image has all three classes, so each has a defined IoU
    assert all(len(r) == 2 and all(re.fullmatch(r'\d+\.\d+', c) for c in r) for r in rows.values()), rows
    scalars = [json.loads(line) for line in open(next(work_dir.glob('*/vis_data/scalars.json')))]
    assert 'mIoU' in scalars[-1], scalars[-1]
