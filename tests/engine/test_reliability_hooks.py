"""The reliability hooks on a toy model in-process: atomic checkpoints, exact resume, NaN stop, label check.

The same behaviour through the real tools and detectors is tested in tests/tools/test_resume_and_dist.py.
"""
import os
import random

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.fileio.backends import local_backend
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.structures import PixelData
from torch.utils.data import Dataset

from vitdense.runtime.errors import describe_error
from vitdense.engine.hooks import (AtomicCheckpointHook, DataError, FiniteLossHook, LossNotFiniteError,
                                   RandomStateHook, SafeCheckpointHook, SegLabelCheckHook, get_rng_state,
                                   set_rng_state)


class ToyData(Dataset):
    """Draws NumPy and Python randomness per sample, like a pipeline's random augmentations."""
    inputs = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    metainfo = {}

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, i):
        jitter = np.float32(np.random.uniform(-0.1, 0.1)) + np.float32(random.uniform(-0.1, 0.1))
        return dict(inputs=self.inputs[i] + jitter, data_samples=self.inputs[i].sum(0, keepdim=True))


class ToyModel(BaseModel):
    """Dropout draws torch randomness each step; ``nan_at`` makes that (1-based) training step's loss NaN."""

    def __init__(self, nan_at=None):
        super().__init__()
        with torch.random.fork_rng():  # the same initial weights in every run
            torch.manual_seed(1)
            self.net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Linear(16, 1))
        self.nan_at, self.steps = nan_at, 0

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.net(inputs)
        if mode != 'loss':
            return out
        self.steps += 1
        loss = ((out - data_samples) ** 2).mean()
        return {'loss': loss * float('nan') if self.steps == self.nan_at else loss}


class Snapshots(Hook):
    """The model's weights after each training iteration (1-based)."""

    def __init__(self):
        self.weights = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.weights[runner.iter + 1] = {k: v.clone() for k, v in runner.model.state_dict().items()}


class ToyMetric(BaseMetric):
    def process(self, data_batch, data_samples):
        # validation that draws randomness must not change training (RandomStateHook isolates it)
        self.results.append(float(torch.rand(1)) + np.random.rand())

    def compute_metrics(self, results):
        return {'toy': float(np.mean(results))}


def toy_runner(work_dir, max_iters, checkpoint_hook, model=None, hooks=(), resume=False, load_from=None,
               val=False, max_epochs=None):
    extra = {}
    if val:
        extra = dict(val_dataloader=dict(dataset=ToyData(), sampler=dict(type='DefaultSampler', shuffle=False),
                                         batch_size=5, collate_fn=dict(type='default_collate')),
                     val_cfg=dict(type='ValLoop'), val_evaluator=[ToyMetric()])
    return Runner(
        model=model or ToyModel(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyData(), batch_size=3, collate_fn=dict(type='default_collate'),
                              sampler=dict(type='DefaultSampler' if max_epochs else 'InfiniteSampler', shuffle=True)),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1) if max_epochs else
        dict(by_epoch=False, max_iters=max_iters, val_interval=2),
        default_hooks=dict(checkpoint=checkpoint_hook, logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[SafeCheckpointHook(), RandomStateHook(), FiniteLossHook(), *hooks],
        randomness=dict(seed=0), resume=resume, load_from=load_from, log_level='WARNING', **extra)


def test_resume_continues_bitwise_like_the_uninterrupted_run(tmp_path):
    reference = Snapshots()
    toy_runner(tmp_path / 'a', 6, AtomicCheckpointHook(interval=2, by_epoch=False), hooks=[reference],
               val=True).train()

    resumed = Snapshots()  # a fresh process would see this: the file from iteration 2, nothing else
    toy_runner(tmp_path / 'b', 6, AtomicCheckpointHook(interval=2, by_epoch=False), hooks=[resumed],
               resume=True, load_from=str(tmp_path / 'a' / 'iter_2.pth'), val=True).train()
    assert sorted(resumed.weights) == [3, 4, 5, 6]
    for step in (3, 6):
        for k, v in reference.weights[step].items():
            assert torch.equal(resumed.weights[step][k], v), (step, k)


def test_epoch_based_resume_continues_bitwise(tmp_path):
    reference, resumed = Snapshots(), Snapshots()
    toy_runner(tmp_path / 'a', None, AtomicCheckpointHook(interval=1), hooks=[reference], val=True,
               max_epochs=3).train()
    toy_runner(tmp_path / 'b', None, AtomicCheckpointHook(interval=1), hooks=[resumed], val=True, max_epochs=3,
               resume=True, load_from=str(tmp_path / 'a' / 'epoch_1.pth')).train()
    assert sorted(resumed.weights) == list(range(5, 13))  # 4 iterations an epoch, epochs 2 and 3
    for k, v in reference.weights[12].items():
        assert torch.equal(resumed.weights[12][k], v), k


def test_without_random_state_hook_the_resume_diverges(tmp_path):
    """The check above can fail: dropout, shuffling and the data's randomness make a plain resume diverge."""
    reference = Snapshots()
    toy_runner(tmp_path / 'a', 4, AtomicCheckpointHook(interval=2, by_epoch=False), hooks=[reference]).train()
    resumed = Snapshots()
    runner = toy_runner(tmp_path / 'a', 4, AtomicCheckpointHook(interval=2, by_epoch=False), hooks=[resumed],
                        resume=True, load_from=str(tmp_path / 'a' / 'iter_2.pth'))
    runner._hooks = [h for h in runner._hooks if not isinstance(h, RandomStateHook)]
    runner.train()
    assert not torch.equal(resumed.weights[4]['net.0.weight'], reference.weights[4]['net.0.weight'])


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    random.random(), np.random.rand(), torch.rand(1)
    torch.save({'rng_state': get_rng_state()}, tmp_path / 'rng.pth')
    expected = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(torch.load(tmp_path / 'rng.pth', weights_only=True)['rng_state'])
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert expected[0] == again[0] and expected[1] == again[1] and torch.equal(expected[2], again[2])


def crash_on_save(number):
    """Patch LocalBackend.put: the ``number``-th checkpoint write stops halfway, as a crash or a full disk would."""
    real_put, calls = local_backend.LocalBackend.put, []

    def put(self, obj, filepath):
        if str(filepath).endswith('.pth') or str(filepath).endswith('.partial'):
            calls.append(filepath)
            if len(calls) == number:
                with open(filepath, 'wb') as f:
                    f.write(obj[:len(obj) // 2])
                raise OSError(28, 'No space left on device (simulated crash mid-write)')
        return real_put(self, obj, filepath)
    return put


@pytest.mark.parametrize('hook_cls', [AtomicCheckpointHook, CheckpointHook])
def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch, hook_cls):
    monkeypatch.setattr(local_backend.LocalBackend, 'put', crash_on_save(2))
    snapshots = Snapshots()
    runner = toy_runner(tmp_path, 4, hook_cls(interval=2, by_epoch=False, max_keep_ckpts=1), hooks=[snapshots])
    with pytest.raises(OSError, match='simulated crash'):
        runner.train()
    named = open(tmp_path / 'last_checkpoint').read().strip()
    if hook_cls is CheckpointHook:
        # mmengine's own hook deleted the only good checkpoint before writing the one that failed
        assert named.endswith('iter_2.pth') and not os.path.exists(named)
        return
    assert named == str(tmp_path / 'iter_2.pth')
    ckpt = torch.load(named, weights_only=True)  # complete and loadable
    assert ckpt['meta']['iter'] == 2
    for k, v in snapshots.weights[2].items():
        assert torch.equal(ckpt['state_dict'][k], v), k
    assert not (tmp_path / 'iter_4.pth').exists()  # only the hidden partial file exists
    assert (tmp_path / '.iter_4.pth.partial').exists()
    # the next run (resuming) clears the leftover and continues from iteration 2
    monkeypatch.undo()
    resumed = toy_runner(tmp_path, 4, hook_cls(interval=2, by_epoch=False, max_keep_ckpts=1), resume=True,
                         load_from=named)
    resumed.train()
    assert resumed.iter == 4 and not (tmp_path / '.iter_4.pth.partial').exists()
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith('.pth')) == ['iter_4.pth']  # max_keep_ckpts=1


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    runner = toy_runner(tmp_path, 6, AtomicCheckpointHook(interval=1, by_epoch=False), model=ToyModel(nan_at=3))
    with pytest.raises(LossNotFiniteError) as info:
        runner.train()
    message = describe_error(info.value)
    assert message.startswith('loss is not finite at iteration 3 (loss=nan)') and '\n' not in message
    assert str(tmp_path / 'iter_2.pth') in message
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith('.pth')) == ['iter_1.pth', 'iter_2.pth']
    assert open(tmp_path / 'last_checkpoint').read().strip() == str(tmp_path / 'iter_2.pth')
    weights = torch.load(tmp_path / 'iter_2.pth', weights_only=True)['state_dict']
    assert all(torch.isfinite(v).all() for v in weights.values())


class _Runner:
    def __init__(self, num_classes=150):
        head = nn.Module()
        head.num_classes, head.ignore_index = num_classes, 255
        self.model = nn.Module()
        self.model.decode_head = head


def ade_batch(tmp_path, values):
    """A real ADE-style label PNG through mmseg's loading (reduce_zero_label) and packing."""
    import mmcv
    from mmseg.datasets.transforms import LoadAnnotations, PackSegInputs
    label = np.zeros((8, 8), np.uint8)
    label.flat[:len(values)] = values
    path = str(tmp_path / 'ADE_train_00000042.png')
    mmcv.imwrite(label, path)
    results = LoadAnnotations(reduce_zero_label=True)(dict(seg_map_path=path, reduce_zero_label=True,
                                                           seg_fields=[]))
    results.update(img=np.zeros((8, 8, 3), np.uint8), img_path=path.replace('.png', '.jpg'), ori_shape=(8, 8),
                   img_shape=(8, 8))
    return {'inputs': [], 'data_samples': [PackSegInputs()(results)['data_samples']]}, path


def test_ade_label_values_outside_the_classes_name_the_file(tmp_path):
    hook = SegLabelCheckHook()
    good, _ = ade_batch(tmp_path, [0, 1, 150, 255])  # unlabelled, first and last class, ignore
    hook.before_train_iter(_Runner(), 0, good)
    bad, path = ade_batch(tmp_path, [0, 3, 151, 200, 255])
    for check in (hook.before_train_iter, hook.before_val_iter, hook.before_test_iter):
        with pytest.raises(DataError) as info:
            check(_Runner(), 0, bad)
        assert str(info.value) == (f'{path}: label values 151, 200 are outside 0..150 (0 = unlabelled) and 255 '
                                   "(ignore) for 150 classes; fix the label file or the dataset's class list")
    # without reduce_zero_label the file's values are the class indices themselves
    sample = bad['data_samples'][0]
    sample.set_metainfo(dict(reduce_zero_label=False))
    sample.gt_sem_seg = PixelData(data=torch.tensor([[[0, 149, 150, 255]]]))
    with pytest.raises(DataError, match=r'label values 150 are outside 0\.\.149 and 255'):
        hook.before_train_iter(_Runner(), 0, bad)
