# Runtime shared by every vitdense detection config: mmdet's, plus vitdense's registries and safe checkpoints.
_base_ = 'mmdet::_base_/default_runtime.py'
custom_imports = dict(imports=['vitdense.models', 'vitdense.engine'], allow_failed_imports=False)
custom_hooks = [dict(type='vitdense.SafeCheckpointHook')]
# TensorBoard: uncomment, or pass --cfg-options visualizer.vis_backends.1.type=TensorboardVisBackend
# visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
