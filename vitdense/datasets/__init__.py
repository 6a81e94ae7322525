"""Data loading pieces vitdense adds to mmdet / mmseg pipelines."""
from .transforms import TRANSFORMS, InferencerLoader, LoadImage, read_image

__all__ = ['TRANSFORMS', 'InferencerLoader', 'LoadImage', 'read_image']
