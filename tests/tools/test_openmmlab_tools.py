"""mmdet's and mmseg's own entry points with vitdense configs and checkpoints that vitdense's training wrote.

Each runs in a fresh interpreter (``sys.executable``), started outside the checkout, so what is imported there is
only what the config's ``custom_imports`` brings: mmdet's ``DetInferencer``, mmseg's ``MMSegInferencer`` and
mmengine's ``Runner.from_cfg(cfg).test()`` (what mmdet's and mmseg's tools/test.py run) must load the checkpoint,
and must refuse, in one line, a file that pickles an object. ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` makes torch's
own default unsafe there, so the refusal can only come from vitdense's loader being switched on by the config.
"""
import json
import os
import subprocess
import sys

import cv2
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from tests.conftest import REPO
from tests.tools.test_resume_and_dist import tiny_config

COCO_IMAGE = os.path.join(REPO, 'data/mini/coco_val2017_mini/mmpose/000000000785.jpg')
ADE_IMAGE = os.path.join(REPO, 'data/mini/ade20k_mini/ADEChallengeData2016/images/validation/'
                               'ADE_val_00000001.jpg')
# an untrained (1-iteration) detector scores every class near 1/81: keep its top 100 detections to look at
MAX_DETECTIONS = 100


class WritesFileWhenUnpickled:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, 'w')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """trained(task) -> (config, checkpoint written by a 1-iteration vitdense training run, a checkpoint that
    pickles an object, the file unpickling it would create); each task trained once per module."""
    made = {}

    def train(task):
        if task in made:
            return made[task]
        folder = tmp_path_factory.mktemp(task)
        cfg = Config.fromfile(tiny_config(task, folder / 'tiny.py', evaluation=True))
        cfg.train_cfg.update(max_iters=1, val_interval=2)
        cfg.default_hooks.checkpoint.interval = 1
        if task == 'det':
            cfg.model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=MAX_DETECTIONS)
        config = str(folder / f'tiny_{task}.py')
        cfg.dump(config)
        cfg.work_dir = str(folder / 'train')
        Runner.from_cfg(cfg).train()
        marker = folder / 'unpickled'
        evil = folder / 'evil.pth'
        torch.save({'state_dict': {}, 'meta': {}, 'payload': WritesFileWhenUnpickled(marker)}, evil)
        made[task] = (config, os.path.join(cfg.work_dir, 'iter_1.pth'), str(evil), marker)
        return made[task]
    return train


def run_fresh(tmp_path, script, *args):
    """``script`` in a new interpreter, in an empty folder; its last stdout line parsed as JSON."""
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore',
               TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1')
    run_dir = tmp_path / 'cwd'
    run_dir.mkdir()
    result = subprocess.run([sys.executable, '-c', script, *map(str, args)], cwd=run_dir, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# The checks every fresh process makes: the model's weights are the checkpoint's, and the pickling file is refused.
COMMON = '''
import json, sys
import torch

def same_weights(model, checkpoint):
    trained = torch.load(checkpoint, map_location='cpu', weights_only=True)['state_dict']
    own = model.state_dict()
    return own.keys() == trained.keys() and all(torch.equal(v, trained[k]) for k, v in own.items())

def refusal(build):
    from vitdense.checkpoint import CheckpointError
    try:
        build()
    except CheckpointError as err:
        return str(err)
    return None
'''

DET_INFERENCER = COMMON + '''
config, checkpoint, evil, image, out_dir = sys.argv[1:]
from mmdet.apis import DetInferencer
inferencer = DetInferencer(model=config, weights=checkpoint, device='cpu')
pred = inferencer(image, out_dir=out_dir, no_save_pred=False)['predictions'][0]
print(json.dumps(dict(same_weights=same_weights(inferencer.model, checkpoint), labels=pred['labels'],
                      scores=pred['scores'], bboxes=pred['bboxes'], masks=len(pred['masks']),
                      refused=refusal(lambda: DetInferencer(model=config, weights=evil, device='cpu')))))
'''

SEG_INFERENCER = COMMON + '''
config, checkpoint, evil, image, out_dir = sys.argv[1:]
from mmseg.apis import MMSegInferencer
inferencer = MMSegInferencer(model=config, weights=checkpoint, device='cpu')
sample = inferencer(image, out_dir=out_dir, return_datasamples=True)
seg = sample.pred_sem_seg.data
print(json.dumps(dict(same_weights=same_weights(inferencer.model, checkpoint), shape=list(seg.shape),
                      low=int(seg.min()), high=int(seg.max()),
                      refused=refusal(lambda: MMSegInferencer(model=config, weights=evil, device='cpu')))))
'''

RUNNER_TEST = COMMON + '''
config, checkpoint, evil, work_dir = sys.argv[1:]
from mmengine.config import Config
from mmengine.runner import Runner

def runner(load_from):
    cfg = Config.fromfile(config)
    cfg.work_dir, cfg.load_from = work_dir, load_from
    return Runner.from_cfg(cfg)

tester = runner(checkpoint)
metrics = tester.test()
print(json.dumps(dict(same_weights=same_weights(tester.model, checkpoint),
                      metrics={k: float(v) for k, v in metrics.items()},
                      refused=refusal(lambda: runner(evil).test()))))
'''


def assert_refused(found, evil, marker):
    assert found is not None and found.startswith(f'refusing to load {evil}: it pickles a ') and \
        'checkpoints are read with weights_only=True' in found, found
    assert not marker.exists()  # nothing was unpickled


def test_mmdet_det_inferencer_loads_vitdense_checkpoint_and_draws(trained, tmp_path):
    config, checkpoint, evil, marker = trained('det')
    out = run_fresh(tmp_path, DET_INFERENCER, config, checkpoint, evil, COCO_IMAGE, tmp_path / 'out')
    assert out['same_weights']
    height, width = cv2.imread(COCO_IMAGE).shape[:2]
    boxes = torch.tensor(out['bboxes'])
    assert boxes.shape == (MAX_DETECTIONS, 4) and out['masks'] == MAX_DETECTIONS
    assert (boxes[:, 2:] >= boxes[:, :2]).all() and (boxes >= 0).all()
    assert (boxes[:, [0, 2]] <= width).all() and (boxes[:, [1, 3]] <= height).all()  # in the original image
    assert all(0 <= label < 80 for label in out['labels']) and all(0 <= s <= 1 for s in out['scores'])
    drawn = cv2.imread(str(tmp_path / 'out' / 'vis' / os.path.basename(COCO_IMAGE)))
    assert drawn is not None and drawn.shape[:2] == (height, width)
    assert_refused(out['refused'], evil, marker)


def test_mmseg_inferencer_loads_vitdense_checkpoint_and_draws(trained, tmp_path):
    config, checkpoint, evil, marker = trained('seg')
    out = run_fresh(tmp_path, SEG_INFERENCER, config, checkpoint, evil, ADE_IMAGE, tmp_path / 'out')
    assert out['same_weights']
    height, width = cv2.imread(ADE_IMAGE).shape[:2]
    assert out['shape'] == [1, height, width] and 0 <= out['low'] <= out['high'] < 150
    drawn = cv2.imread(str(tmp_path / 'out' / 'vis' / os.path.basename(ADE_IMAGE)))
    assert drawn is not None and drawn.shape[:2] == (height, width)
    assert_refused(out['refused'], evil, marker)


@pytest.mark.parametrize('task, metric', [('det', 'coco/bbox_mAP'), ('seg', 'mIoU')])
def test_runner_test_path_loads_vitdense_checkpoint(trained, tmp_path, task, metric):
    config, checkpoint, evil, marker = trained(task)
    out = run_fresh(tmp_path, RUNNER_TEST, config, checkpoint, evil, tmp_path / 'work')
    assert out['same_weights']
    assert 0 <= out['metrics'][metric] <= 100
    assert_refused(out['refused'], evil, marker)


def test_importing_vitdense_checkpoint_changes_nothing_and_vitdense_engine_switches_safe_loading_on(tmp_path):
    out = run_fresh(tmp_path, '''
import json
from vitdense.checkpoint.io import safe_loading_installed
import vitdense.checkpoint, vitdense.models
before = safe_loading_installed()
import vitdense.engine
print(json.dumps([before, safe_loading_installed()]))
''')
    assert out == [False, True]
