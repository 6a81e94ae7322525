from .base import DenseBackbone
from .convnext import ConvNeXt
from .swin import SwinTransformer

__all__ = ['DenseBackbone', 'ConvNeXt', 'SwinTransformer']
