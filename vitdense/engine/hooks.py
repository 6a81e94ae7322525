"""Hooks every vitdense config installs: checkpoints that survive a crash and resume exactly, clear stops.

* :class:`SafeCheckpointHook` - checkpoint content readable with ``torch.load(weights_only=True)``.
* :class:`AtomicCheckpointHook` - mmengine's ``CheckpointHook`` with crash-safe files: a checkpoint is written to a
  hidden file in the same folder, fsynced and renamed into place; ``last_checkpoint`` is replaced the same way and
  only afterwards; expired checkpoints are deleted only after the new one is complete. A crash at any moment leaves
  the previous checkpoint and a ``last_checkpoint`` that names a complete file.
* :class:`RandomStateHook` - stores the Python / NumPy / torch random states in every checkpoint and restores them
  on resume exactly where the interrupted run would have continued (just before the next training batch is
  fetched), so a resumed run repeats the uninterrupted one (bitwise on CPU with ``randomness.deterministic``).
  Validation runs with its own copy of the random state, so how often one validates never changes training.
* :class:`FiniteLossHook` - stops training with one line naming the iteration when the loss is NaN / inf, before
  the checkpoint hook can save that state.
* :class:`SegLabelCheckHook` - stops with one line naming the label file and the values when a segmentation map
  holds a class index the head does not have (what would otherwise be an index error deep in the loss, or
  silently ignored pixels in evaluation).
"""
import glob
import os
import os.path as osp
import random
from typing import Any, Optional

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import HistoryBuffer

from vitdense.errors import DataError, LossNotFiniteError
from vitdense.registry import HOOKS
from .wrappers import unwrap_model

_BUFFER_TAG = '__history_buffer__'


def to_plain(value: Any) -> Any:
    """Numpy values -> tensors / Python values, recursively, so ``torch.load(weights_only=True)`` reads them."""
    if isinstance(value, HistoryBuffer):
        return {_BUFFER_TAG: True, 'log': torch.from_numpy(np.asarray(value._log_history, dtype=np.float64)),
                'count': torch.from_numpy(np.asarray(value._count_history, dtype=np.float64)),
                'max_length': int(value.max_length)}
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy()) if value.dtype.kind in 'biuf' else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return type(value)((k, to_plain(v)) for k, v in value.items()) if type(value) is not dict \
            else {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(v) for v in value)
    return value


def from_plain(value: Any) -> Any:
    """Inverse of :func:`to_plain` for the message hub's history buffers."""
    if isinstance(value, dict):
        if value.get(_BUFFER_TAG):
            # .cpu(): mmengine resumes with map_location set to the GPU
            return HistoryBuffer(value['log'].cpu().numpy(), value['count'].cpu().numpy(), value['max_length'])
        return {k: from_plain(v) for k, v in value.items()}
    return value


@HOOKS.register_module()
class SafeCheckpointHook(Hook):
    """Make the runner's checkpoints loadable with ``torch.load(weights_only=True)``.

    mmengine stores its message hub (``HistoryBuffer`` objects with numpy arrays) in every checkpoint; torch's
    safe loader refuses those globals, which breaks ``tools/test.py`` and ``--resume``. Before saving, this hook
    turns them into tensors and plain values; after loading, it turns them back. No global is allow-listed.
    """
    priority = 'VERY_LOW'  # run after every hook that adds to the checkpoint

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key in ('meta', 'message_hub'):
            if key in checkpoint:
                checkpoint[key] = to_plain(checkpoint[key])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if 'message_hub' in checkpoint:
            checkpoint['message_hub'] = from_plain(checkpoint['message_hub'])


# ---- crash-safe files ----------------------------------------------------------------------------------------

def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_file(partial: str, final: str) -> None:
    """Make a fully written ``partial`` file appear as ``final`` in one step (fsync, rename, fsync the folder)."""
    with open(partial, 'rb') as f:
        os.fsync(f.fileno())
    os.replace(partial, final)
    _fsync_dir(osp.dirname(osp.abspath(final)))


def write_text_atomic(path: str, text: str) -> None:
    partial = osp.join(osp.dirname(osp.abspath(path)), f'.{osp.basename(path)}.partial')
    with open(partial, 'w') as f:
        f.write(text)
    publish_file(partial, path)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` (same arguments) whose checkpoints appear complete or not at all.

    mmengine writes a checkpoint in place, deletes the oldest kept one *before* writing the new one and then
    rewrites ``last_checkpoint``: a crash in between can leave a truncated latest file, or (``max_keep_ckpts=1``)
    no checkpoint at all. Here the file goes to ``.<name>.partial`` in the same folder and is renamed into place
    after an fsync; ``last_checkpoint`` is replaced atomically after that, and expired checkpoints are removed
    last. Non-local backends (e.g. object stores, whose uploads are already all-or-nothing) keep mmengine's path.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process() and isinstance(self.file_backend, LocalBackend):
            for leftover in glob.glob(osp.join(self.out_dir, '.*.partial')):  # from a crash mid-write
                os.remove(leftover)

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not isinstance(self.file_backend, LocalBackend):
            return super()._save_checkpoint_with_step(runner, step, meta)
        expired = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                expired = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        partial = f'.{filename}.partial'
        runner.save_checkpoint(self.out_dir, partial, self.file_client_args, save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
                               backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        publish_file(osp.join(self.out_dir, partial), self.last_ckpt)
        write_text_atomic(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        if expired is not None:
            old = osp.join(self.out_dir, self.filename_tmpl.format(expired))
            if osp.isfile(old):
                os.remove(old)


# ---- random state --------------------------------------------------------------------------------------------

def get_rng_state() -> dict:
    """Python, NumPy and torch (CPU and every CUDA device) random states as tensors and plain values."""
    version, internal, gauss_next = random.getstate()
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {'python': {'version': version, 'internal': list(internal), 'gauss_next': gauss_next},
             'numpy': {'keys': keys.tolist(), 'pos': int(pos), 'has_gauss': int(has_gauss),
                       'cached_gaussian': float(cached_gaussian)},
             'torch': torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state['python']
    random.setstate((py['version'], tuple(py['internal']), py['gauss_next']))
    npy = state['numpy']
    np.random.set_state(('MT19937', np.asarray(npy['keys'], dtype=np.uint32), npy['pos'], npy['has_gauss'],
                         npy['cached_gaussian']))
    torch.set_rng_state(state['torch'].cpu())  # resuming on a GPU maps every tensor there
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


class _RestoreBeforeNextBatch:
    """Wraps the train loop's batch iterator: after ``skip`` batches, sets the random state, then unwraps itself.

    mmengine's ``IterBasedTrainLoop`` resumes by drawing (and discarding) the batches the interrupted run already
    trained on, which replays the sampler and the data workers; the main process's random state is set right
    after that, so the next batch and the step on it see the state the interrupted run saved.
    """

    def __init__(self, loop, skip: int, state: dict):
        self._loop, self._inner, self._skip, self._state = loop, loop.dataloader_iterator, skip, state

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip == 0:
            set_rng_state(self._state)
            self._loop.dataloader_iterator = self._inner
        self._skip -= 1
        return next(self._inner)

    def __getattr__(self, name):
        return getattr(self._inner, name)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the random state with each checkpoint, restore it on resume, keep validation out of it.

    The state saved is the one at the end of the checkpointed iteration / epoch, i.e. the state the next batch
    is drawn with. On resume it is set just before the first new batch is fetched (iteration-based loops) or at
    the start of the first new epoch (epoch-based loops). With several processes only rank 0's state is stored
    (only rank 0 writes checkpoints); a multi-process resume then re-seeds the other ranks as a fresh start does,
    which continues training correctly but not bitwise like the uninterrupted run.
    """
    priority = 'VERY_LOW'

    def __init__(self):
        self._resumed_state: Optional[dict] = None
        self._val_outer_state: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = get_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # only a resume continues the random sequence; loading weights to fine-tune or test does not
        if getattr(runner, '_resume', False) and 'rng_state' in checkpoint and runner.world_size == 1:
            self._resumed_state = checkpoint['rng_state']

    def before_train(self, runner) -> None:
        loop = runner.train_loop
        if self._resumed_state is not None and hasattr(loop, 'dataloader_iterator'):
            loop.dataloader_iterator = _RestoreBeforeNextBatch(loop, loop.iter, self._resumed_state)
            self._resumed_state = None

    def before_train_epoch(self, runner) -> None:
        if self._resumed_state is not None:
            set_rng_state(self._resumed_state)
            self._resumed_state = None

    def before_val(self, runner) -> None:
        self._val_outer_state = get_rng_state()

    def after_val(self, runner) -> None:
        if self._val_outer_state is not None:
            set_rng_state(self._val_outer_state)
            self._val_outer_state = None


# ---- clear stops ---------------------------------------------------------------------------------------------

@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stop with one line when a loss term is NaN or inf, before any later hook (checkpoint, logger) runs."""
    priority = 'VERY_HIGH'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not outputs:
            return
        bad = {k: float(torch.as_tensor(v).detach().float().sum()) for k, v in outputs.items()
               if 'loss' in k and not torch.isfinite(torch.as_tensor(v).detach()).all()}
        if not bad:
            return
        last = runner.message_hub.get_info('last_ckpt')
        kept = f'the last good checkpoint is {last}' if last else 'no checkpoint was saved yet'
        terms = ', '.join(f'{k}={v}' for k, v in bad.items())
        raise LossNotFiniteError(
            f'loss is not finite at iteration {runner.iter + 1} ({terms}); training stopped without saving this '
            f'state and {kept}; lower the learning rate (or add gradient clipping) and resume from it')


@HOOKS.register_module()
class SegLabelCheckHook(Hook):
    """Check every segmentation batch (train, val, test) for class indices the decode head does not have.

    Valid values after loading are ``0..num_classes-1`` and the head's ``ignore_index`` (255). With
    ``reduce_zero_label`` (ADE20K) the file's values are one higher (0 = "other" becomes 255), and the error
    reports the values as they are in the file. Detection batches pass through untouched.
    """
    priority = 'VERY_HIGH'

    def _check(self, runner, data_batch) -> None:
        samples = (data_batch or {}).get('data_samples') if isinstance(data_batch, dict) else None
        if not samples or not hasattr(samples[0], 'gt_sem_seg'):
            return
        model = unwrap_model(runner.model)
        head = getattr(model, 'decode_head', None)
        num_classes = getattr(head, 'num_classes', None)
        if num_classes is None:
            return
        ignore = getattr(head, 'ignore_index', 255)
        for sample in samples:
            labels = sample.gt_sem_seg.data
            out = labels[(labels >= num_classes) & (labels != ignore)]
            if out.numel() == 0 and labels.min() >= 0:
                continue
            values = sorted(set(out.unique().tolist()) | set(labels[labels < 0].unique().tolist()))
            reduced = bool(sample.metainfo.get('reduce_zero_label', False))
            shown = [v + 1 for v in values] if reduced else values
            valid = f'0..{num_classes} (0 = unlabelled)' if reduced else f'0..{num_classes - 1}'
            path = sample.metainfo.get('seg_map_path', '<label map>')
            listed = ', '.join(map(str, shown[:10])) + (', ...' if len(shown) > 10 else '')
            raise DataError(f'{path}: label values {listed} are outside {valid} and {ignore} (ignore) for '
                            f'{num_classes} classes; fix the label file or the dataset\'s class list')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._check(runner, data_batch)

    def before_val_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._check(runner, data_batch)

    def before_test_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._check(runner, data_batch)
