"""Validation and test loops whose model runs in bfloat16: ``val_cfg`` / ``test_cfg`` ``type='vitdense.BF16TestLoop'``
(what ``tools/test.py --amp bf16`` sets)."""
import torch
from mmengine.runner import TestLoop, ValLoop

from vitdense.registry import LOOPS
from .mixed_precision import autocast_network


class _NetworkInBF16:
    """Runs each iteration of the loop it is mixed into with the network under bfloat16 autocast and the
    post-processing (box decoding, NMS, mask pasting) in float32 (:func:`autocast_network`); mmengine's
    ``fp16=True`` autocasts the whole step, post-processing included, which mmcv's CPU NMS refuses."""

    def run_iter(self, idx, data_batch) -> None:
        with autocast_network(self.runner.model, torch.bfloat16):
            super().run_iter(idx, data_batch)


@LOOPS.register_module()
class BF16ValLoop(_NetworkInBF16, ValLoop):
    """mmengine's ``ValLoop`` with the network in bfloat16."""


@LOOPS.register_module()
class BF16TestLoop(_NetworkInBF16, TestLoop):
    """mmengine's ``TestLoop`` with the network in bfloat16."""
