"""Hooks every vitdense config installs."""
from typing import Any

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

from vitdense.registry import HOOKS

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
            return HistoryBuffer(value['log'].numpy(), value['count'].numpy(), value['max_length'])
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
