# Runtime shared by every vitdense classification config: mmpretrain's, plus vitdense's registries and the
# reliability hooks of the detection / segmentation runtimes (vitdense/engine/hooks.py). Classification
# (ImageNet pretraining / fine-tuning, mini crops) runs through tools/train.py and tools/test.py like detection
# and segmentation: they dispatch on default_scope = 'mmpretrain'.
_base_ = 'mmpretrain::_base_/default_runtime.py'
custom_imports = dict(imports=['vitdense.models', 'vitdense.engine', 'vitdense.datasets'],
                      allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='vitdense.AtomicCheckpointHook'))
custom_hooks = [dict(type='vitdense.SafeCheckpointHook'), dict(type='vitdense.RandomStateHook'),
                dict(type='vitdense.FiniteLossHook')]
