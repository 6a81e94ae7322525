"""Short training runs on the bundled real mini data, and the checkpoint save -> load -> test -> resume path."""
import os

import numpy as np
import pytest
import torch
from mmengine.runner import Runner

from tests.conftest import REPO
from vitdense.runtime.config import load_config

DET = os.path.join(REPO, 'configs/swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py')
CASCADE = os.path.join(REPO, 'configs/swin/cascade-mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py')
# box AP (seed 0) differs between CPUs: 0.001 / 0.041 after 10 / 20 iterations on one machine, 0.000 / 0.000 /
# 0.081 / 0.179 after 10 / 20 / 30 / 40 on another; 30 keeps a margin on both
CASCADE_ITERS, CASCADE_ROIS = 30, 64
SEG = os.path.join(REPO, 'configs/convnext/upernet_convnext-t_mini-ade20k.py')


def mini_cfg(path, work_dir, max_iters, det_scale=(320, 240)):
    cfg = load_config(path, work_dir=str(work_dir))
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = 10 ** 6  # evaluate only when a test asks
    cfg.default_hooks.checkpoint.interval = max_iters
    cfg.default_hooks.logger.interval = 1
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3)]
    cfg.randomness = dict(seed=0)
    cfg.log_level = 'WARNING'
    if cfg.default_scope == 'mmdet':  # smaller images keep a CPU step around a second
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            for t in cfg[loader].dataset.pipeline:
                if t.type == 'Resize':
                    t.scale = det_scale
    return cfg


def train_losses(runner):
    runner.train()
    return np.asarray(runner.message_hub.get_scalar('train/loss')._log_history)


def test_mask_rcnn_mini_training_loss_decreases(tmp_path):
    losses = train_losses(Runner.from_cfg(mini_cfg(DET, tmp_path, max_iters=12)))
    assert len(losses) == 12 and np.isfinite(losses).all()
    assert losses[-3:].mean() < 0.75 * losses[:3].mean(), losses


def test_upernet_mini_training_loss_decreases(tmp_path):
    losses = train_losses(Runner.from_cfg(mini_cfg(SEG, tmp_path, max_iters=12)))
    assert len(losses) == 12 and np.isfinite(losses).all()
    assert losses[-3:].mean() < 0.75 * losses[:3].mean(), losses


def coco_box_ap(runner):
    return runner.val()['coco/bbox_mAP']


@pytest.mark.e2e
def test_cascade_mini_training_moves_box_ap_above_the_untrained_model(tmp_path):
    """The one Cascade Mask R-CNN end-to-end run: train on the real mini COCO, evaluate on it (box AP 0.000
    untrained). Sized for a CPU: 256x192 images and, per image, CASCADE_ROIS sampled RoIs per stage and 100
    proposals, as the 4conv1fc box heads and the mask heads cost 129M / 530M multiply-adds per RoI and stage."""
    cfg = mini_cfg(CASCADE, tmp_path, max_iters=CASCADE_ITERS, det_scale=(256, 192))
    for stage in cfg.model.train_cfg.rcnn:
        stage.sampler.num = CASCADE_ROIS
    cfg.model.train_cfg.rpn_proposal.max_per_img = cfg.model.test_cfg.rpn.max_per_img = 100
    runner = Runner.from_cfg(cfg)
    runner.train()
    losses = np.asarray(runner.message_hub.get_scalar('train/loss')._log_history)
    assert len(losses) == CASCADE_ITERS and np.isfinite(losses).all()
    assert coco_box_ap(runner) > 0.0


def test_checkpoint_save_load_test_and_resume(tmp_path):
    runner = Runner.from_cfg(mini_cfg(DET, tmp_path / 'train', max_iters=2))
    runner.train()
    ckpt_path = tmp_path / 'train' / 'iter_2.pth'
    trained = {k: v.clone() for k, v in runner.model.state_dict().items()}

    # the framework's own checkpoint loads under torch's default weights_only=True
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt['meta']['iter'] == 2 and set(ckpt['state_dict']) == set(trained)

    # tools/test.py path: load_from + test -> pycocotools metrics, weights identical to the trained ones
    cfg = mini_cfg(DET, tmp_path / 'test', max_iters=2)
    cfg.load_from = str(ckpt_path)
    tester = Runner.from_cfg(cfg)
    metrics = tester.test()
    assert {'coco/bbox_mAP', 'coco/segm_mAP'} <= set(metrics)
    for k, v in tester.model.state_dict().items():
        assert torch.equal(v, trained[k]), k

    # tools/test.py --amp bf16: the same checkpoint through vitdense.BF16TestLoop (mmengine's fp16=True test loop
    # autocasts the post-processing too, and mmcv's CPU NMS refuses its bfloat16 boxes)
    from vitdense.runtime.launch import set_test_precision
    cfg = mini_cfg(DET, tmp_path / 'test-bf16', max_iters=2)
    cfg.load_from = str(ckpt_path)
    set_test_precision(cfg, 'bf16')
    cfg.val_cfg = dict(type='vitdense.BF16ValLoop')
    tester = Runner.from_cfg(cfg)
    assert set(tester.test()) == set(metrics) == set(tester.val())
    assert [type(tester.test_loop).__name__, type(tester.val_loop).__name__] == ['BF16TestLoop', 'BF16ValLoop']

    # --resume path: continues at iteration 2 with the logged history restored
    cfg = mini_cfg(DET, tmp_path / 'train', max_iters=3)
    cfg.resume, cfg.load_from = True, str(ckpt_path)
    resumed = Runner.from_cfg(cfg)
    resumed.train()
    assert resumed.iter == 3
    history = resumed.message_hub.get_scalar('train/loss')._log_history
    assert len(history) == 3  # 2 restored + 1 new


def test_train_tool_reports_missing_data_in_one_line(tmp_path):
    import subprocess
    import sys
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, 'tools/train.py'),
         os.path.join(REPO, 'configs/swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'), '--work-dir', str(tmp_path),
         '--cfg-options', f'train_dataloader.dataset.data_root={tmp_path}/coco/'],
        capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: train_dataloader: annotation file not found') or \
        last.startswith('error: train_dataloader: data folder not found'), last
