from .hooks import SafeCheckpointHook
from .optimizers import LayerDecayOptimWrapperConstructor

__all__ = ['SafeCheckpointHook', 'LayerDecayOptimWrapperConstructor']
