"""Training-time pieces every vitdense config imports (``custom_imports``): hooks, optimiser wrappers, and the
switch to safe checkpoint loading."""
from vitdense.checkpoint.io import install_safe_loading

from .hooks import (AtomicCheckpointHook, FiniteLossHook, RandomStateHook, SafeCheckpointHook,
                    SegLabelCheckHook)
from .loops import BF16TestLoop, BF16ValLoop
from .mixed_precision import autocast_network
from .optim_wrappers import BF16AutocastOptimWrapper
from .optimizers import LayerDecayOptimWrapperConstructor

__all__ = ['AtomicCheckpointHook', 'BF16AutocastOptimWrapper', 'BF16TestLoop', 'BF16ValLoop', 'FiniteLossHook',
           'LayerDecayOptimWrapperConstructor', 'RandomStateHook', 'SafeCheckpointHook', 'SegLabelCheckHook',
           'autocast_network']

# Every vitdense config lists this package in custom_imports, so whatever reads such a config (vitdense's tools,
# mmdet's / mmseg's tools and inferencers, a user's Runner.from_cfg) reads local checkpoints weights_only.
install_safe_loading()
