from .hooks import (AtomicCheckpointHook, FiniteLossHook, RandomStateHook, SafeCheckpointHook,
                    SegLabelCheckHook)
from .optimizers import LayerDecayOptimWrapperConstructor

__all__ = ['AtomicCheckpointHook', 'FiniteLossHook', 'LayerDecayOptimWrapperConstructor', 'RandomStateHook',
           'SafeCheckpointHook', 'SegLabelCheckHook']
