# Runtime shared by every vitdense detection config: mmdet's, plus vitdense's registries and the reliability hooks
# (vitdense/engine/hooks.py): checkpoints loadable with weights_only=True and written atomically, exact resume of
# the random state, and a one-line stop on a NaN / inf loss.
_base_ = 'mmdet::_base_/default_runtime.py'
custom_imports = dict(imports=['vitdense.models', 'vitdense.engine', 'vitdense.datasets'],
                      allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='vitdense.AtomicCheckpointHook'))
custom_hooks = [dict(type='vitdense.SafeCheckpointHook'), dict(type='vitdense.RandomStateHook'),
                dict(type='vitdense.FiniteLossHook')]
# TensorBoard: uncomment the next line (a dict cannot be passed through --cfg-options).
# visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
