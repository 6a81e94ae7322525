"""Data loading pieces vitdense adds to mmdet / mmseg pipelines."""
from .transforms import TRANSFORMS, LoadImage

__all__ = ['TRANSFORMS', 'LoadImage']
