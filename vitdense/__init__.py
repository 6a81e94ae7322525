"""vitdense: dense prediction (mmdet / mmseg) with vision-transformer-era backbones.

    import vitdense
    vitdense.list_models('swin')                     # backbone names and shipped config names
    backbone = vitdense.get_model('swin-t')          # a backbone; pretrained=PATH loads any layout it reads
    detector = vitdense.get_model('swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco', pretrained='work_dirs/.../x.pth')
    cfg = vitdense.load_config('mask-rcnn_swin-t-p4-w7_fpn_mini-coco')   # vitdense:: bases included
    inferencer = vitdense.build_inferencer(CONFIG, CHECKPOINT)          # mmdet's / mmseg's own inferencer

Importing vitdense is light (no torch): these names load their modules when first used.
"""
__version__ = '0.1.0'

_LAZY = {
    'list_models': 'vitdense.zoo', 'get_model': 'vitdense.zoo', 'list_configs': 'vitdense.zoo',
    'load_config': 'vitdense.runtime.config', 'resolve_config': 'vitdense.zoo', 'model_index': 'vitdense.zoo',
    'build_inferencer': 'vitdense.inference',
}
__all__ = ['__version__'] + sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vitdense' has no attribute '{name}'")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
