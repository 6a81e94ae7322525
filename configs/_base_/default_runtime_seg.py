# Runtime shared by every vitdense segmentation config: mmseg's, plus vitdense's registries and safe checkpoints.
_base_ = 'mmseg::_base_/default_runtime.py'
custom_imports = dict(imports=['vitdense.models', 'vitdense.engine'], allow_failed_imports=False)
custom_hooks = [dict(type='vitdense.SafeCheckpointHook')]
