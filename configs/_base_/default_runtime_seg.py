# Runtime shared by every vitdense segmentation config: mmseg's, plus vitdense's registries and the reliability
# hooks (vitdense/engine/hooks.py): checkpoints loadable with weights_only=True, exact resume of the random state,
# one-line stops on a NaN / inf loss and on label values the head has no class for. mmseg's schedules define
# default_hooks, so the schedule names the checkpoint hook: use type='vitdense.AtomicCheckpointHook' there.
_base_ = 'mmseg::_base_/default_runtime.py'
custom_imports = dict(imports=['vitdense.models', 'vitdense.engine', 'vitdense.datasets'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='vitdense.SafeCheckpointHook'), dict(type='vitdense.RandomStateHook'),
                dict(type='vitdense.FiniteLossHook'), dict(type='vitdense.SegLabelCheckHook')]
