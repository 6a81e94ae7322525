"""Data loading pieces vitdense adds to mmdet / mmseg pipelines."""
from .transforms import (TRANSFORMS, LoadImage, check_images_when_evaluating, check_inferencer_images,
                         read_image)

__all__ = ['TRANSFORMS', 'LoadImage', 'check_images_when_evaluating', 'check_inferencer_images', 'read_image']
