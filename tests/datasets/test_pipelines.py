"""Every training pipeline loads images with vitdense.LoadImage, so unusual files reach the model as 3-channel
8-bit images (or stop with one line) through the configs users train with, not only when the transform is
called directly. Test pipelines keep mmcv's LoadImageFromFile: mmdet's / mmseg's inferencers find the loader by
that name to put their own (which also takes arrays) in its place."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from tests.conftest import REPO
from tests.test_configs import CONFIGS
from vitdense.apis import leaf_datasets


@pytest.mark.parametrize('path', CONFIGS)
def test_every_config_trains_on_images_loaded_by_vitdense(path):
    cfg = Config.fromfile(os.path.join(REPO, path))
    assert 'vitdense.datasets' in cfg.custom_imports.imports
    found = list(leaf_datasets(cfg))
    assert len(found) >= 3
    for split, dataset in found:
        want = 'vitdense.LoadImage' if split.startswith('train') else 'LoadImageFromFile'
        assert dataset.pipeline[0]['type'] == want, f'{split}: {dataset.pipeline[0]}'


def test_gray_rgba_and_16bit_files_train_through_the_mini_coco_config(tmp_path):
    """The real mini COCO with images re-saved (PNG bytes under the .jpg names the annotations use) as 16-bit
    grayscale and as RGBA: the built dataset yields 3-channel tensors equal to the 8-bit originals; one holding
    12-bit data in 16 bits (nearly black as 8 bits, which mmcv's loader passes on silently) stops naming it."""
    from vitdense.datasets.transforms import ImageError
    from mmdet.registry import DATASETS
    root = tmp_path / 'coco'
    shutil.copytree(os.path.join(REPO, 'data', 'mini', 'coco_val2017_mini'), root)
    names = [img['file_name'] for img in json.load(open(root / 'instances_mini.json'))['images']]
    originals = {name: cv2.imread(str(root / name)) for name in names[:3]}
    gray = cv2.cvtColor(originals[names[0]], cv2.COLOR_BGR2GRAY)
    variants = {names[0]: gray.astype(np.uint16) * 257,
                names[1]: np.dstack([originals[names[1]],
                                    np.full(originals[names[1]].shape[:2], 128, np.uint8)]),
                names[2]: originals[names[2]].astype(np.uint16) * 16}
    for name, img in variants.items():
        ok, data = cv2.imencode('.png', img)
        assert ok
        (root / name).write_bytes(data.tobytes())

    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'swin', 'mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py'))
    init_default_scope('mmdet')
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.data_root = str(root) + '/'
    dataset_cfg.pipeline = [dataset_cfg.pipeline[0], dict(type='PackDetInputs')]  # the config's loader, no resize
    dataset = DATASETS.build(dataset_cfg)
    by_name = {os.path.relpath(dataset.get_data_info(i)['img_path'], root): i for i in range(len(dataset))}
    expected = {names[0]: np.repeat(gray[..., None], 3, 2), names[1]: originals[names[1]]}
    for name, want in expected.items():
        inputs = dataset[by_name[name]]['inputs']
        assert tuple(inputs.shape) == (3,) + want.shape[:2]
        assert np.array_equal(inputs.permute(1, 2, 0).numpy(), want), name
    with pytest.raises(ImageError, match=f'{root / names[2]} is a 16-bit image whose brightest value is'):
        dataset[by_name[names[2]]]
