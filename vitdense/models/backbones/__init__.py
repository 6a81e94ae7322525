from .base import DenseBackbone
from .boat import BOATClassifier, BOATCSWin, BOATSwin
from .convnext import ConvNeXt
from .sequencer import Sequencer2D
from .swin import SwinTransformer
from .timm_backbone import TimmBackbone
from .timm_vit import TimmViT
from .vit import VisionTransformer
from .vit_adapter import ViTAdapter
from .vit_hybrid import HybridVisionTransformer
from .ceit import CeiT, CeiTClassifier

__all__ = ['DenseBackbone', 'ConvNeXt', 'SwinTransformer']
__all__ += ['VisionTransformer', 'CeiT', 'CeiTClassifier']
__all__ += ['Sequencer2D']
__all__ += ['BOATSwin', 'BOATCSWin', 'BOATClassifier']
__all__ += ['TimmBackbone']
__all__ += ['HybridVisionTransformer']
__all__ += ['TimmViT']
__all__ += ['ViTAdapter']
