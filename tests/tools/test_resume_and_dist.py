"""Crash and resume, and multi-process training, through the real tools on tiny versions of the mini configs.

Per task (detection: Mask R-CNN + Swin, segmentation: UperNet + ConvNeXt), in parallel subprocesses:
  A  tools/train.py, 6 iterations, checkpoint every 2, uninterrupted (1 process, batch 2);
  B  the same, killed with SIGKILL as soon as its first checkpoint file exists (mid-interval), then
  C  the same command line with --resume (its interpreter pre-started, see PREWARMED): it continues from B's
     last checkpoint;
  D  (detection) tools/dist_train.sh with 2 gloo processes x batch 1: the same global batch as A.
C's final weights must equal A's bit for bit (CPU, fixed seed, deterministic mode), and so must every loss it
logged after the resume point. D's loss curve (mean over the two ranks) must follow A's within the tolerance
below: the two are the same optimisation, but not the same arithmetic (per-process padding of the images,
per-process random streams for proposal sampling and drop path, per-image vs per-batch loss normalisation).
Segmentation runs multi-process the same way (SyncBN becomes per-process BN on CPU; UperNet then needs >= 2
images per process); it is left out here to keep the test's ~10 process start-ups affordable.
"""
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import torch

from tests.conftest import REPO
from vitdense.runtime.config import load_config
from vitdense.runtime.resume import find_resume_checkpoint

TRAIN = os.path.join(REPO, 'tools/train.py')
DIST_TRAIN = os.path.join(REPO, 'tools/dist_train.sh')
MAX_ITERS = 6
# |mean-over-ranks loss - 1-process loss| / 1-process loss, averaged over the iterations (measured: 0.0045)
DIST_LOSS_TOLERANCE = 0.05


def tiny_config(task: str, path, evaluation: bool = False) -> str:
    """The mini config with a small model, small images, 6 iterations, checkpoints every 2; evaluation (at the
    end, on the mini val set at the same small size) only with ``evaluation=True``."""
    if task == 'det':
        cfg = load_config(os.path.join(REPO, 'configs/swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py'))
        m = cfg.model
        m.backbone.arch = dict(embed_dim=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8))
        m.neck.update(in_channels=[32, 64, 128, 256], out_channels=64)
        m.rpn_head.update(in_channels=64, feat_channels=64)
        m.roi_head.bbox_roi_extractor.out_channels = 64
        m.roi_head.bbox_head.update(in_channels=64, fc_out_channels=128)
        m.roi_head.mask_roi_extractor.out_channels = 64
        m.roi_head.mask_head.update(in_channels=64, conv_out_channels=64)
        m.train_cfg.rpn.sampler.num = m.train_cfg.rcnn.sampler.num = 64
        m.train_cfg.rpn_proposal.update(nms_pre=500, max_per_img=100)
        for t in cfg.train_dataloader.dataset.pipeline + cfg.test_dataloader.dataset.pipeline:
            if t.type == 'Resize':
                t.scale = (160, 120)
    else:
        cfg = load_config(os.path.join(REPO, 'configs/convnext/upernet_convnext-t_mini-ade20k.py'))
        m = cfg.model
        m.backbone.arch = dict(depths=(1, 1, 1, 1), dims=(32, 64, 128, 256))
        m.decode_head.update(in_channels=[32, 64, 128, 256], channels=64)
        m.auxiliary_head.update(in_channels=128, channels=32)
        m.data_preprocessor.size = (64, 64)
        for ds in cfg.train_dataloader.dataset.datasets:
            for t in ds.pipeline:
                if t.type == 'RandomResize':
                    t.scale = (128, 64)
                elif t.type == 'RandomCrop':
                    t.crop_size = (64, 64)
    cfg.train_cfg.update(max_iters=MAX_ITERS, val_interval=MAX_ITERS + 1)
    if not evaluation:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint.update(interval=2, max_keep_ckpts=2)
    cfg.default_hooks.logger.interval = 1
    cfg.randomness = dict(seed=0, deterministic=True)
    cfg.log_level = 'WARNING'
    cfg.pop('work_dir', None)
    cfg.dump(str(path))
    return str(path)


# PYTHON: tools/dist_train.sh starts torchrun (and so every worker) with the interpreter running this test
ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', PYTHON=sys.executable)
# C's interpreter starts with A and B and does its slow imports meanwhile; when B has been killed it runs
# tools/train.py with the given arguments, exactly as `python tools/train.py ...` would
PREWARMED = """import os, runpy, sys, time
import mmengine.runner, {scope}.models, {scope}.datasets, vitdense.models, vitdense.engine, vitdense.datasets
go = sys.argv.pop(1)
while not os.path.exists(go):
    time.sleep(0.05)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


STARTED = []


def start(args, log_path, **env):
    proc = subprocess.Popen(args, stdout=open(log_path, 'w'), stderr=subprocess.STDOUT, cwd=REPO,
                            env=dict(ENV, **env), start_new_session=True)
    STARTED.append(proc)
    return proc


def stop_leftovers():
    """After a failure: end every process group this test started that still runs (C waits otherwise)."""
    for proc in STARTED:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    STARTED.clear()


def finish(proc, log_path, timeout=600):
    proc.wait(timeout=timeout)
    assert proc.returncode == 0, open(log_path).read()[-3000:]


def logged_losses(work_dir):
    """iteration -> loss, from the runner's scalars.json files (a resumed run writes a second one)."""
    losses = {}
    for path in sorted(glob.glob(os.path.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        for line in open(path):
            entry = json.loads(line)
            if 'loss' in entry:
                losses[entry['iter']] = entry['loss']
    return losses


def rank_losses(work_dir, rank):
    """iteration -> loss from one rank's text log (mmengine writes one per rank at log_level DEBUG)."""
    paths = glob.glob(os.path.join(work_dir, '*', f'*rank{rank}.log'))
    assert paths, f'no rank {rank} log in {work_dir}'
    found = re.findall(r'Iter\(train\) \[\s*(\d+)/\d+\].*? loss: ([0-9.]+)', open(paths[0]).read())
    return {int(i): float(v) for i, v in found}


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def state_dict(path):
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


class Job:
    """One task's runs: A uninterrupted, B killed then C resumed in B's work dir, D two processes."""

    def __init__(self, task, tmp_path):
        self.task, self.tmp = task, tmp_path / task
        self.tmp.mkdir()
        self.config = tiny_config(task, self.tmp / f'tiny_{task}.py')
        self.a, self.b, self.d = self.tmp / 'A', self.tmp / 'B', self.tmp / 'D'

    def train(self, name, work_dir, *args):
        return start([sys.executable, TRAIN, self.config, '--work-dir', str(work_dir), *args], self.tmp / name)

    def start(self, two_processes=False):
        self.run_a = self.train('A.log', self.a)
        self.run_b = self.train('B.log', self.b)
        self.go = self.tmp / 'resume_now'
        scope = 'mmdet' if self.task == 'det' else 'mmseg'
        self.run_c = start([sys.executable, '-c', PREWARMED.format(scope=scope), str(self.go), TRAIN, self.config,
                            '--work-dir', str(self.b), '--resume'], self.tmp / 'C.log')
        if not two_processes:
            return
        per_process = 1  # half of A's batch: the same global batch
        self.run_d = start(['bash', DIST_TRAIN, self.config, '2', '--work-dir', str(self.d), '--cfg-options',
                            f'train_dataloader.batch_size={per_process}', 'log_level=DEBUG'], self.tmp / 'D.log',
                           PORT=str(free_port()))

    def kill_b_after_first_checkpoint(self) -> bool:
        if not (self.b / 'iter_2.pth').exists():
            assert self.run_b.poll() is None, open(self.tmp / 'B.log').read()[-3000:]
            return False
        self.run_b.send_signal(signal.SIGKILL)
        self.run_b.wait()
        assert self.run_b.returncode == -signal.SIGKILL
        assert not (self.b / f'iter_{MAX_ITERS}.pth').exists()
        # usually last_checkpoint names it; a kill between the file's rename and that pointer's update leaves
        # only the file, which --resume then finds by itself
        resumed_from = find_resume_checkpoint(str(self.b))
        self.start_iter = int(re.search(r'iter_(\d+)\.pth$', resumed_from).group(1))
        assert self.start_iter < MAX_ITERS
        self.go.touch()  # C: python tools/train.py CONFIG --work-dir B --resume
        return True

    def check_resume(self):
        finish(self.run_c, self.tmp / 'C.log')
        finish(self.run_a, self.tmp / 'A.log')
        reference = state_dict(self.a / f'iter_{MAX_ITERS}.pth')
        resumed = state_dict(self.b / f'iter_{MAX_ITERS}.pth')
        assert reference.keys() == resumed.keys()
        differing = [k for k in reference if not torch.equal(reference[k], resumed[k])]
        assert not differing, f'{self.task}: {len(differing)} tensors differ after resume, e.g. {differing[:3]}'
        # the losses logged after the resume point are the uninterrupted run's, exactly
        self.losses_a, losses_c = logged_losses(self.a), logged_losses(self.b)
        assert set(self.losses_a) == set(range(1, MAX_ITERS + 1))
        for i in range(self.start_iter + 1, MAX_ITERS + 1):
            assert losses_c[i] == self.losses_a[i], (self.task, i, losses_c[i], self.losses_a[i])

    def dist_difference(self):
        finish(self.run_d, self.tmp / 'D.log')
        assert (self.d / f'iter_{MAX_ITERS}.pth').exists()
        curve_a = np.array([self.losses_a[i] for i in range(1, MAX_ITERS + 1)])
        per_rank = [rank_losses(self.d, r) for r in (0, 1)]
        curve_d = np.array([(per_rank[0][i] + per_rank[1][i]) / 2 for i in range(1, MAX_ITERS + 1)])
        assert np.isfinite(curve_d).all()
        rel = np.abs(curve_d - curve_a) / curve_a
        print(f'\n{self.task} 1 process:   {np.round(curve_a, 4).tolist()}'
              f'\n{self.task} 2 processes: {np.round(curve_d, 4).tolist()}'
              f'\nrelative difference: {np.round(rel, 4).tolist()} (mean {rel.mean():.4f})')
        return rel.mean()


def test_sigkill_then_resume_equals_uninterrupted_and_two_processes_match(tmp_path):
    try:
        jobs = [Job('det', tmp_path), Job('seg', tmp_path)]
        for job in jobs:  # all runs at once: each is mostly single-threaded start-up
            job.start(two_processes=job.task == 'det')
        waiting, deadline = list(jobs), time.time() + 600
        while waiting:  # SIGKILL each B right after its first checkpoint lands: it dies inside the next interval
            waiting = [job for job in waiting if not job.kill_b_after_first_checkpoint()]
            assert time.time() < deadline
            time.sleep(0.05)
        for job in jobs:
            job.check_resume()
        assert jobs[0].dist_difference() < DIST_LOSS_TOLERANCE
    finally:
        stop_leftovers()
