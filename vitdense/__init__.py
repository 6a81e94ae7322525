"""vitdense: dense prediction (mmdet / mmseg) with vision-transformer-era backbones."""
__version__ = '0.1.0'
