from .simple_pyramid import SimpleFeaturePyramid

__all__ = ['SimpleFeaturePyramid']
