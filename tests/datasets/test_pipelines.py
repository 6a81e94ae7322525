"""Every pipeline vitdense runs loads images with vitdense.LoadImage, so unusual files reach the model as
3-channel 8-bit images (or stop with one line) through the configs users train and evaluate with, not only when
the transform is called directly. The configs say so themselves: training pipelines name vitdense.LoadImage, test
pipelines name it as ``dict(type='LoadImageFromFile', _scope_='vitdense')`` (mmdet's / mmseg's inferencers find the
file loader by that name to put their own in its place, which then reads files with vitdense's); no tool swaps
loaders."""
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
from vitdense.runtime.data_checks import leaf_datasets
from vitdense.datasets import LoadImage, read_image
from vitdense.datasets.transforms import ImageError


@pytest.mark.parametrize('path', CONFIGS)
def test_every_config_trains_on_images_loaded_by_vitdense(path):
    from mmengine.registry import TRANSFORMS
    cfg = Config.fromfile(os.path.join(REPO, path))
    assert 'vitdense.datasets' in cfg.custom_imports.imports
    # what switches weights_only checkpoint loading on wherever the config is read (tests/tools/test_openmmlab_tools)
    assert 'vitdense.engine' in cfg.custom_imports.imports and not cfg.custom_imports.get('allow_failed_imports')
    found = list(leaf_datasets(cfg))
    assert len(found) >= 3
    for split, dataset in found:
        want = dict(type='vitdense.LoadImage') if split.startswith('train') else \
            dict(type='LoadImageFromFile', _scope_='vitdense')
        loader = dict(dataset.pipeline[0])
        assert {k: loader[k] for k in want if k in loader} == want, f'{split}: {loader}'
        assert type(TRANSFORMS.build(loader)) is LoadImage, f'{split}: {loader}'


MINI_COCO = os.path.join(REPO, 'configs', 'swin', 'mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py')


def unusual_mini_coco(tmp_path):
    """A copy of the real mini COCO whose first three images are re-saved (PNG bytes under the .jpg names the
    annotations use) as 16-bit grayscale, as RGBA, and as 12-bit data in 16 bits (nearly black as 8 bits).
    Returns (root, image file names, the 8-bit originals of the first three)."""
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
    return root, names, originals


def test_gray_rgba_and_16bit_files_train_through_the_mini_coco_config(tmp_path):
    """The built training dataset yields 3-channel tensors equal to the 8-bit originals for the 16-bit gray and
    RGBA files; the 12-bit one (nearly black as 8 bits, which mmcv's loader passes on silently) stops naming it."""
    from mmdet.registry import DATASETS
    root, names, originals = unusual_mini_coco(tmp_path)
    gray = cv2.cvtColor(originals[names[0]], cv2.COLOR_BGR2GRAY)
    cfg = Config.fromfile(MINI_COCO)
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


def test_evaluation_reads_images_as_training_does(tmp_path):
    """The mini COCO config's test dataset as the config builds it (tools/test.py, mmdet's tools, Runner.test):
    the 12-bit file, which mmcv's loader hands on nearly black (values 0-15), stops naming the file, and the 16-bit
    gray file gives the 8-bit gray image."""
    from mmdet.registry import DATASETS
    root, names, originals = unusual_mini_coco(tmp_path)
    cfg = Config.fromfile(MINI_COCO)
    init_default_scope('mmdet')
    config_loader = dict(cfg.test_dataloader.dataset.pipeline[0])

    def test_dataset(loader):
        dataset_cfg = cfg.test_dataloader.dataset
        dataset_cfg.data_root = str(root) + '/'
        dataset_cfg.pipeline = [loader, dict(type='PackDetInputs')]
        dataset = DATASETS.build(dataset_cfg)
        return dataset, {os.path.relpath(dataset.get_data_info(i)['img_path'], root): i for i in range(len(dataset))}
    dataset, by_name = test_dataset(dict(type='LoadImageFromFile'))
    assert int(dataset[by_name[names[2]]]['inputs'].max()) <= 15  # mmcv's loader: silently dark
    dataset, by_name = test_dataset(config_loader)
    with pytest.raises(ImageError, match=f'{root / names[2]} is a 16-bit image whose brightest value is'):
        dataset[by_name[names[2]]]
    gray = cv2.cvtColor(originals[names[0]], cv2.COLOR_BGR2GRAY)
    assert np.array_equal(dataset[by_name[names[0]]]['inputs'].permute(1, 2, 0).numpy(), np.repeat(gray[..., None], 3, 2))


def test_inferencer_and_transfer_images_are_read_as_in_training(tmp_path):
    """build_inferencer's file loader and the transfer tooling's image reader are vitdense.LoadImage: an 8-bit
    file gives mmcv's pixels, the 12-bit file stops with one line naming it."""
    from mmcv.transforms import LoadImageFromFile
    from vitdense.datasets import LoadImage
    from vitdense.inference import build_inferencer
    from vitdense.transfer import load_images
    root, names, _ = unusual_mini_coco(tmp_path)
    jpeg = next(str(root / name) for name in names[3:] if (root / name).read_bytes()[:2] == b'\xff\xd8')
    inferencer = build_inferencer(MINI_COCO, None, device='cpu')
    loaders = [t.from_file for t in inferencer.pipeline.transforms if hasattr(t, 'from_file')]
    assert len(loaders) == 1 and type(loaders[0]) is LoadImage
    assert np.array_equal(loaders[0](dict(img_path=jpeg))['img'], LoadImageFromFile()(dict(img_path=jpeg))['img'])
    with pytest.raises(ImageError, match='is a 16-bit image whose brightest value is'):
        inferencer(str(root / names[2]))
    assert np.array_equal(read_image(jpeg), cv2.imread(jpeg))
    assert tuple(load_images([jpeg], 32).shape) == (1, 3, 32, 32)
    with pytest.raises(ImageError, match=f'{root / names[2]} is a 16-bit image'):
        load_images([str(root / names[2])], 32)


@pytest.mark.parametrize('config, module, name', [
    (MINI_COCO, 'mmdet.apis', 'DetInferencer'),
    (os.path.join(REPO, 'configs', 'convnext', 'upernet_convnext-t_mini-ade20k.py'), 'mmseg.apis', 'MMSegInferencer')])
def test_mmdet_and_mmseg_inferencers_built_directly_read_files_with_vitdense_loader(config, module, name, tmp_path):
    """The inferencers put their InferencerLoader where the config's test pipeline names 'LoadImageFromFile' (in
    vitdense's scope): files go through vitdense.LoadImage (the 12-bit file stops naming it), arrays as they are."""
    import importlib
    from vitdense.datasets import InferencerLoader
    root, names, originals = unusual_mini_coco(tmp_path)
    inferencer = getattr(importlib.import_module(module), name)(model=config, device='cpu')
    loaders = [t for t in inferencer.pipeline.transforms if hasattr(t, 'from_file')]
    # mmdet's inferencer names its own InferencerLoader (built in vitdense's scope), mmseg's an unscoped one: vitdense's
    own_loader = InferencerLoader if name == 'MMSegInferencer' else \
        importlib.import_module('mmdet.datasets.transforms').InferencerLoader
    assert len(loaders) == 1 and type(loaders[0]) is own_loader and type(loaders[0].from_file) is LoadImage
    with pytest.raises(ImageError, match=f'{root / names[2]} is a 16-bit image whose brightest value is'):
        inferencer(str(root / names[2]))
    gray16 = str(root / names[0])
    from_file = loaders[0](gray16)
    gray = cv2.cvtColor(originals[names[0]], cv2.COLOR_BGR2GRAY)
    assert np.array_equal(from_file['img'], np.repeat(gray[..., None], 3, 2))
    from_array = loaders[0](from_file['img'])
    assert np.array_equal(from_array['img'], from_file['img']) and from_array['img_path'] is None
    assert from_array['img_shape'] == from_array['ori_shape'] == gray.shape[:2]
