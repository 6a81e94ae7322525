"""Bad input reaches the user as one line, ``error: ...`` with exit status 2, and nothing is lost.

The tools run in-process here (``runpy`` with a patched ``sys.argv``: the same code path as the command line
without a ~10 s interpreter start-up each); tests/tools/test_train_test.py runs one as a real subprocess.
Checkpoint loading itself (wrong family / arch, window interpolation, full detector as backbone, pickled
objects, truncated files) is tested in tests/checkpoint/test_loading.py; here: the same refusals through the tools.
"""
import json
import os
import re
import runpy
import sys

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.conftest import REPO
from tests.tools.test_resume_and_dist import tiny_config
from vitdense.errors import UserError
from vitdense.runtime.config import load_config
from vitdense.runtime.data_checks import check_coco_annotations, check_seg_folders
from vitdense.runtime.errors import describe_error
from vitdense.checkpoint import CheckpointError

TRAIN = os.path.join(REPO, 'tools/train.py')
TEST = os.path.join(REPO, 'tools/test.py')
DET_MINI = os.path.join(REPO, 'configs/swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py')
SEG_MINI = os.path.join(REPO, 'configs/convnext/upernet_convnext-t_mini-ade20k.py')
COCO_JSON = os.path.join(REPO, 'data/mini/coco_val2017_mini/instances_mini.json')


def run_tool(script, *args):
    """(exit status, the last line on stderr) of ``python script args`` run in this process."""
    argv, sys.argv = sys.argv, [script, *map(str, args)]
    try:
        runpy.run_path(script, run_name='__main__')
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
    return code


def one_error_line(capsys, script, *args):
    code = run_tool(script, *args)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines[-20:]
    assert lines and lines[-1].startswith('error: '), lines[-20:]
    return lines[-1]


class RunsCodeWhenUnpickled:
    def __reduce__(self):
        return print, ('this ran while loading a checkpoint',)


# ---- config mistakes ------------------------------------------------------------------------------------------

def test_unknown_head_and_backbone_names(tmp_path, capsys):
    line = one_error_line(capsys, TRAIN, DET_MINI, '--work-dir', tmp_path, '--cfg-options',
                          'model.roi_head.type=StandardRoIHaed')
    assert line.startswith("error: unknown type 'StandardRoIHaed' in the config: no such model in mmdet's "
                           'registry; close matches: StandardRoIHead'), line
    line = one_error_line(capsys, TRAIN, SEG_MINI, '--work-dir', tmp_path, '--cfg-options',
                          'model.decode_head.type=UperHead')
    assert "unknown type 'UperHead'" in line and "mmseg's registry; close matches: UPerHead" in line, line
    line = one_error_line(capsys, TRAIN, DET_MINI, '--work-dir', tmp_path, '--cfg-options',
                          'model.backbone.type=vitdense.SwinTransfomer')
    assert line.startswith("error: 'SwinTransfomer' is not a registered vitdense model; available: ") and \
        'SwinTransformer' in line, line


def test_missing_data_root_and_unwritable_work_dir(tmp_path, capsys):
    line = one_error_line(capsys, TRAIN, DET_MINI, '--work-dir', tmp_path, '--cfg-options',
                          f'train_dataloader.dataset.data_root={tmp_path}/nowhere/')
    assert line == f'error: train_dataloader: data folder not found: {tmp_path}/nowhere/ (expected the ' \
        'standard layout there, e.g. data/coco/{annotations,train2017,val2017} or ' \
        'data/ade/ADEChallengeData2016/{images,annotations}; download it or point data_root elsewhere with ' \
        '--cfg-options)'
    blocker = tmp_path / 'a_file'
    blocker.write_text('')  # we run as root: permissions do not stop us, a file in the path does
    line = one_error_line(capsys, TRAIN, DET_MINI, '--work-dir', blocker / 'run')
    assert line == f'error: work_dir {blocker}/run is not writable (Not a directory); pass --work-dir DIR ' \
        'with a folder you can write'


def test_input_smaller_than_the_total_stride(tmp_path):
    """Detectors pad to a multiple of 32 and take it; a segmentor that does not pad gets one line."""
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    cfg = load_config(tiny_config('seg', tmp_path / 'seg.py'))
    cfg.model.data_preprocessor.size = None
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    sample = SegDataSample(gt_sem_seg=PixelData(data=torch.zeros(1, 16, 16, dtype=torch.long)))
    sample.set_metainfo(dict(img_shape=(16, 16), ori_shape=(16, 16), pad_shape=(16, 16)))
    data = model.data_preprocessor({'inputs': [torch.zeros(3, 16, 16, dtype=torch.uint8)],
                                    'data_samples': [sample]}, False)  # normalise, no padding
    with pytest.raises(ValueError) as info:
        model.loss(**data)
    assert describe_error(info.value) == ('ConvNeXt got a 16x16 input, smaller than its total stride 32; resize '
                                          'or pad images to at least 32x32')

    from mmdet.registry import MODELS as DET_MODELS
    from mmdet.testing import demo_mm_inputs
    with DefaultScope.overwrite_default_scope('mmdet'):
        det = DET_MODELS.build(load_config(tiny_config('det', tmp_path / 'det.py')).model)
    batch = demo_mm_inputs(1, [[3, 20, 15]], num_items=[2], with_mask=True)
    data = det.data_preprocessor(batch, True)
    assert data['inputs'].shape[-2:] == (32, 32)  # 20x15 padded to the size divisor
    losses = det.loss(data['inputs'], data['data_samples'])
    terms = [t for k, v in losses.items() if 'loss' in k for t in (v if isinstance(v, list) else [v])]
    assert terms and all(torch.isfinite(t).all() for t in terms)


def test_unknown_backbone_argument_is_one_line(tmp_path, capsys):
    """A key the backbone does not take names the key and the class, with what it takes or the close matches."""
    line = one_error_line(capsys, TRAIN, DET_MINI, '--work-dir', tmp_path, '--cfg-options', 'model.backbone.foo=1')
    assert line.startswith("error: unknown argument 'foo' for SwinTransformer in the config; it takes: arch, "), line
    line = one_error_line(capsys, TRAIN, DET_MINI, '--work-dir', tmp_path, '--cfg-options',
                          'model.backbone.drop_path=0.1')
    assert line == ("error: unknown argument 'drop_path' for SwinTransformer in the config; close matches: "
                    'drop_path_rate'), line
    # a bad config value the backbone checks (ConfigError) is one line too
    line = one_error_line(capsys, TRAIN, DET_MINI, '--work-dir', tmp_path, '--cfg-options', 'model.backbone.arch=tinyy')
    assert line.startswith("error: unknown ") and "arch 'tinyy'; choose one of" in line, line


class ConfiguredPart:
    """A class a config builds whose constructor makes a bad call of its own (a bug, not the config's)."""

    def __init__(self, size=1, buggy=False):
        if buggy:
            InnerPart(bad=size)


class InnerPart:
    def __init__(self):
        pass


def test_type_errors_inside_a_constructor_are_bugs():
    """Only a config key the built class (or a parent it hands **kwargs to) refuses is the user's; a bad call inside
    the constructor, or a TypeError outside any config build, keeps its traceback."""
    from mmengine.registry import Registry
    parts = Registry('part')
    parts.register_module(module=ConfiguredPart)
    with pytest.raises(TypeError) as info:
        parts.build(dict(type='ConfiguredPart', sise=2))
    assert describe_error(info.value) == "unknown argument 'sise' for ConfiguredPart in the config; close matches: size"
    with pytest.raises(TypeError, match="unexpected keyword argument 'bad'") as info:
        parts.build(dict(type='ConfiguredPart', buggy=True))
    assert describe_error(info.value) is None
    with pytest.raises(TypeError) as info:
        ConfiguredPart(sise=2)
    assert describe_error(info.value) is None


# ---- data --------------------------------------------------------------------------------------------------

def write_coco(tmp_path, data):
    path = tmp_path / 'ann.json'
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def coco(**changes):
    data = dict(images=[dict(id=1, file_name='a.jpg', width=100, height=80)],
                annotations=[dict(id=10, image_id=1, category_id=1, bbox=[10, 10, 20, 20], area=400, iscrowd=0)],
                categories=[dict(id=1, name='person')])
    data.update(changes)
    return data


def test_coco_annotation_errors_are_one_line(tmp_path):
    cases = [
        ('{"images": [}', r'ann\.json is not valid JSON \(Expecting value at line 1 column 13\)'),
        ('[1, 2]', 'holds a JSON list, expected a COCO object'),
        (dict(images=[], categories=[]), r'is not a COCO instances file: no annotations list \(keys found: '
                                         r'categories, images\)'),
        (coco(images=[]), 'lists no images; the dataset would be empty'),
        (coco(images=[dict(id=1, file_name='a.jpg', width=100)]), 'image 1 has no height'),
        (coco(annotations=[dict(id=7, image_id=1, category_id=1)]), 'annotation 7 has no bbox'),
        (coco(annotations=[dict(id=7, image_id=1, category_id=1, bbox=[1, 2, 3])]),
         r"annotation 7 has bbox \[1, 2, 3\]; expected \[x, y, width, height\] numbers"),
        (coco(annotations=[dict(id=7, image_id=1, category_id=1, bbox=[1, 2, 'x', 4])]), 'annotation 7 has bbox'),
        (coco(categories=[dict(id=1, name='widget')]),
         r"none of its 1 categories \(e\.g\. 'widget'\) is among the dataset's 80 classes \(e\.g\. 'person'\)"),
    ]
    from vitdense.runtime.data_checks import _dataset_classes
    classes = _dataset_classes(dict(type='CocoDataset'))
    for data, message in cases:
        with pytest.raises(UserError, match=message) as info:
            check_coco_annotations(write_coco(tmp_path, data), classes)
        assert '\n' not in str(info.value)


def test_coco_boxes_mmdet_drops_or_clips_are_reported_by_annotation_id(tmp_path):
    anns = [dict(id=1, image_id=1, category_id=1, bbox=[10, 10, 20, 20], area=400),  # fine
            dict(id=2, image_id=1, category_id=1, bbox=[10, 10, 0, 20], area=0),  # zero width
            dict(id=3, image_id=1, category_id=1, bbox=[10, 10, 20, 20], area=0),  # zero area
            dict(id=4, image_id=1, category_id=1, bbox=[150, 10, 20, 20], area=400),  # right of the image
            dict(id=5, image_id=1, category_id=1, bbox=[90, 70, 20, 20], area=400),  # sticks out
            dict(id=6, image_id=9, category_id=1, bbox=[1, 1, 5, 5], area=25),  # no such image
            dict(id=8, image_id=1, category_id=2, bbox=[1, 1, 5, 5], area=25)]
    data = coco(annotations=anns, categories=[dict(id=1, name='person'), dict(id=2, name='widget')])
    path = write_coco(tmp_path, data)
    assert check_coco_annotations(path, ('person', 'car')) == [
        f'{path}: 2 boxes with zero area or a side < 1 px are ignored (annotation ids 2, 3)',
        f'{path}: 1 boxes lie entirely outside their image and are ignored (annotation ids 4)',
        f'{path}: 1 boxes extend beyond their image and are clipped to it (annotation ids 5)',
        f'{path}: 1 annotations name an image id that is not in images and are ignored (annotation ids 6)',
        f"{path}: categories not among the dataset's classes are ignored: widget"]
    # and mmdet's CocoDataset does drop them (the warning says what happens)
    from mmdet.datasets import CocoDataset
    ds = CocoDataset(ann_file=path, data_root=str(tmp_path), data_prefix=dict(img=''),
                     metainfo=dict(classes=('person', 'car')),
                     pipeline=[], test_mode=True, lazy_init=False)
    kept = [i['bbox'] for i in ds.get_data_info(0)['instances'] if i['ignore_flag'] == 0]
    assert kept == [[10, 10, 30, 30], [90, 70, 110, 90]]


def test_bad_coco_json_through_the_train_tool(tmp_path, capsys):
    bad = tmp_path / 'coco'
    bad.mkdir()
    (bad / 'instances_mini.json').write_text('{"images": [')
    line = one_error_line(capsys, TRAIN, DET_MINI, '--work-dir', tmp_path / 'w', '--cfg-options',
                          f'train_dataloader.dataset.data_root={bad}/', f'val_dataloader.dataset.data_root={bad}/')
    assert line == f'error: {bad}/instances_mini.json is not valid JSON (Expecting value at line 1 column 13)'


def test_segmentation_folders_without_images_or_labels(tmp_path):
    (tmp_path / 'img').mkdir()
    (tmp_path / 'ann').mkdir()
    with pytest.raises(UserError, match=r'no \*\.jpg images in .*img; the dataset would be empty'):
        check_seg_folders(str(tmp_path / 'img'), str(tmp_path / 'ann'))
    for name in ('a', 'b'):
        (tmp_path / 'img' / f'{name}.jpg').write_bytes(b'')
    (tmp_path / 'ann' / 'a.png').write_bytes(b'')
    with pytest.raises(UserError, match=r'1 images in .*img have no label map .*ann/<name>\.png \(e\.g\. b\.jpg\)'):
        check_seg_folders(str(tmp_path / 'img'), str(tmp_path / 'ann'))


# ---- images ------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp('images')
    rgb = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / 'rgb.png'), rgb)
    cv2.imwrite(str(folder / 'gray.png'), rgb[..., 0])
    cv2.imwrite(str(folder / 'rgba.png'), np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)]))
    cv2.imwrite(str(folder / 'rgb16.png'), rgb.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / 'gray16.png'), rgb[..., 0].astype(np.uint16) * 257)
    cv2.imwrite(str(folder / 'dim16.png'), rgb.astype(np.uint16) * 4)  # 10-bit data in a 16-bit file
    cv2.imwrite(str(folder / 'ok.jpg'), rgb)
    data = (folder / 'ok.jpg').read_bytes()
    (folder / 'truncated.jpg').write_bytes(data[:len(data) // 2])
    (folder / 'text.jpg').write_text('not an image')
    (folder / 'empty.png').write_bytes(b'')
    return folder, rgb


def test_gray_rgba_and_16bit_images_load_as_3_channel_8bit(images):
    from vitdense.datasets import LoadImage
    folder, rgb = images
    load = LoadImage()
    expected = {'rgb.png': rgb, 'gray.png': np.repeat(rgb[..., :1], 3, 2), 'rgba.png': rgb, 'rgb16.png': rgb,
                'gray16.png': np.repeat(rgb[..., :1], 3, 2)}
    for name, want in expected.items():
        img = load(dict(img_path=str(folder / name)))['img']
        assert img.dtype == np.uint8 and img.shape == (24, 32, 3), name
        assert np.array_equal(img, want), name
    # 8-bit files decode exactly as mmcv's loader decodes them
    from mmcv.transforms import LoadImageFromFile
    assert np.array_equal(load(dict(img_path=str(folder / 'ok.jpg')))['img'],
                          LoadImageFromFile()(dict(img_path=str(folder / 'ok.jpg')))['img'])


def test_unusable_images_fail_in_one_line_naming_the_file(images):
    from vitdense.datasets import LoadImage
    folder, _ = images
    load = LoadImage()
    cases = {'dim16.png': 'is a 16-bit image whose brightest value is 1020 of 65535; as 8 bits it would be nearly '
                          'black', 'truncated.jpg': 'cannot decode image', 'text.jpg': 'cannot decode image',
             'empty.png': 'is empty (0 bytes)'}
    for name, message in cases.items():
        with pytest.raises(UserError) as info:
            load(dict(img_path=str(folder / name)))
        assert message in describe_error(info.value) and str(folder / name) in describe_error(info.value), name
    # mmcv's own loader (configs that keep LoadImageFromFile): its assertion becomes one line too, also when a
    # DataLoader worker re-raises it with the worker's traceback folded into the message
    from mmcv.transforms import LoadImageFromFile
    loader = DataLoader([dict(img_path=str(folder / 'truncated.jpg'))], batch_size=None, num_workers=1,
                        collate_fn=LoadImageFromFile())
    with pytest.raises(AssertionError) as info:
        next(iter(loader))
    assert 'Original Traceback' in str(info.value)
    assert describe_error(info.value) == (f'cannot decode image {folder}/truncated.jpg: the file is truncated, '
                                          'corrupt or not an image; replace or remove it')


def test_real_bugs_keep_their_traceback():
    assert describe_error(KeyError('some_key')) is None
    assert describe_error(RuntimeError('shape mismatch')) is None
    assert describe_error(ValueError('raised outside vitdense')) is None
    assert describe_error(AssertionError('x > 0')) is None


def test_a_value_error_raised_inside_vitdense_is_a_bug_and_keeps_its_traceback():
    """Errors are told apart by type, not by where they were raised: a plain ValueError from vitdense's own code
    (an internal invariant) is a bug; bad input raises ConfigError / UserError, which are one line."""
    from vitdense.errors import ConfigError
    from vitdense.models.backbones import swin
    with pytest.raises(ValueError) as info:  # raised with its last frame in vitdense/models/backbones/swin.py
        exec(compile("raise ValueError('an internal invariant broke')", swin.__file__, 'exec'), {})
    assert info.traceback[-1].path == type(info.traceback[-1].path)(swin.__file__)
    assert describe_error(info.value) is None
    assert describe_error(ConfigError('window_size=-1 must be 0 (global attention) or a positive size')) == \
        'window_size=-1 must be 0 (global attention) or a positive size'


# ---- checkpoints through the tools -----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def tiny_det(tmp_path_factory):
    """The tiny detection config and a checkpoint of its model as tools/train.py writes it (state_dict + meta)."""
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope
    folder = tmp_path_factory.mktemp('tiny_det')
    config = tiny_config('det', folder / 'tiny_det.py')
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(load_config(config).model)
    return config, folder, model.state_dict()


def test_test_tool_refuses_bad_checkpoints_in_one_line(tiny_det, tmp_path, capsys):
    config, _, sd = tiny_det
    line = one_error_line(capsys, TEST, config, tmp_path / 'nope.pth')
    assert line == f'error: checkpoint not found: {tmp_path}/nope.pth (check init_cfg.checkpoint / the CKPT argument)'
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint')
    assert 'is not a readable PyTorch checkpoint' in one_error_line(capsys, TEST, config, text)

    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': sd, 'meta': {'iter': 1}, 'payload': RunsCodeWhenUnpickled()}, evil)
    refusal = one_error_line(capsys, TEST, config, evil)
    assert re.match(rf'error: refusing to load {evil}: it pickles a (builtins\.)?print object', refusal), refusal
    # --resume gives the same refusal, before anything is built
    assert one_error_line(capsys, TRAIN, config, '--work-dir', tmp_path / 'w', '--resume', evil) == refusal

    backbone_only = tmp_path / 'backbone.pth'
    torch.save({k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}, backbone_only)
    line = one_error_line(capsys, TEST, config, backbone_only)
    assert line.startswith(f'error: {backbone_only} does not match the model of this config: ') and \
        'it looks like a backbone-only checkpoint: use it as model.backbone.init_cfg.checkpoint' in line, line

    other_classes = tmp_path / 'other_classes.pth'
    changed = dict(sd)
    changed['roi_head.bbox_head.fc_cls.weight'] = torch.zeros(21, 128)
    torch.save({'state_dict': changed, 'meta': {}}, other_classes)
    line = one_error_line(capsys, TEST, config, other_classes)
    assert line == (f'error: {other_classes} does not match the model of this config: 1 tensors have other '
                    "shapes, e.g. 'roi_head.bbox_head.fc_cls.weight' (21, 128) vs (81, 128) in the model "
                    '(another size or number of classes?); pass the checkpoint trained with this config')

    weights_only_sd = tmp_path / 'weights.pth'
    torch.save(sd, weights_only_sd)
    line = one_error_line(capsys, TRAIN, config, '--work-dir', tmp_path / 'w', '--resume', weights_only_sd)
    assert line == (f'error: {weights_only_sd} is not a training checkpoint (no meta / state_dict); --resume '
                    'takes a .pth that tools/train.py wrote; to start from its weights use --cfg-options '
                    f'load_from={weights_only_sd}')


def test_mmengine_loads_checkpoints_weights_only_even_when_the_environment_says_otherwise(tmp_path, monkeypatch):
    """In this process; tests/tools/test_openmmlab_tools.py checks the same in fresh processes, through mmdet's and
    mmseg's own inferencers and test tools."""
    from mmengine.runner.checkpoint import _load_checkpoint
    import vitdense.engine  # noqa: F401  (what every vitdense config's custom_imports does: switches safe loading on)
    evil = tmp_path / 'evil.pth'
    torch.save({'payload': RunsCodeWhenUnpickled()}, evil)
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')  # would make a bare torch.load unpickle it
    with pytest.raises(CheckpointError, match=r'refusing to load .*pickles a (builtins\.)?print object'):
        _load_checkpoint(str(evil), map_location='cpu')


# ---- the analysis, benchmark and data tools answer the same way as train / test ----------------------------------
@pytest.mark.parametrize('tool, args, message', [
    ('get_flops', [DET_MINI, '--shape', 1, 2, 3], 'error: --shape takes 1 or 2 numbers (S, or H W), got 3'),
    ('benchmark', [DET_MINI, '--shape', 1, 2, 3], 'error: --shape takes 1 or 2 numbers (S, or H W), got 3'),
    ('browse_dataset', ['configs/no_such_config.py'], 'error: config not found: configs/no_such_config.py'),
    ('demo', [DET_MINI, 'no.pth', 'no.jpg'], 'error: input not found: no.jpg (pass an image file or a folder'),
    ('analyze_logs', ['no_such_run/scalars.json'], 'error: log not found: no_such_run/scalars.json'),
    ('make_coco_crops', ['--ann-file', 'no_such.json'], 'error: COCO annotation file not found: no_such.json'),
    ('model_zoo', ['--configs', 'no_such_dir'], 'error: --configs no_such_dir is not a folder'),
    ('benchmark_boat', ['--repeats', 0], 'error: --repeats and --batch must be >= 1'),
    ('benchmark_sequencer', ['--repeats', 0], 'error: --repeats must be >= 1 and --warmup >= 0'),
    ('benchmark', [DET_MINI, '--train', '--batches', 0], 'error: --batches and --repeats must be positive'),
    ('profile_iteration', [DET_MINI, '--repeats', -1], 'error: --runner-iters and --repeats must be >= 0'),
    ('benchmark_optimizer', [DET_MINI, '--repeats', 0], 'error: --repeats must be >= 1'),
    ('benchmark_linear', ['--shapes', '12x3'], "error: --shapes: expected TOKENSxINxOUT such as 16384x96x288, "
                                               "got '12x3'"),
])
def test_analysis_tools_give_one_line_and_exit_status_2(tool, args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    line = one_error_line(capsys, os.path.join(REPO, 'tools', f'{tool}.py'), *args,
                          *(['--out-dir', tmp_path / 'out'] if tool == 'make_coco_crops' else []))
    assert line.startswith(message), line
