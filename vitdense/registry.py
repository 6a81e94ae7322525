"""vitdense's registries: children of mmengine's root registries under the scope ``vitdense``.

Every vitdense module registers here once. Because these registries hang off mmengine's roots, both mmdet
and mmseg configs reach them by the scoped name, the way mmdet reaches mmpretrain's ConvNeXt::

    custom_imports = dict(imports=['vitdense.models'], allow_failed_imports=False)
    model = dict(backbone=dict(type='vitdense.SwinTransformer', ...))

A scoped name that is not registered raises a one-line ``KeyError`` listing what vitdense has.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import Registry


class _ListingRegistry(Registry):
    """A registry whose misses name the available entries instead of returning None."""

    def get(self, key):
        obj = super().get(key)
        scope, name = self.split_scope_key(key)
        if obj is None and scope in (None, self.scope):
            available = ', '.join(sorted(self._module_dict))
            raise KeyError(f"'{name}' is not a registered vitdense {self.name}; "
                           f"available: {available}")
        return obj

    def build(self, cfg, *args, **kwargs):
        # mmengine builds inside the current default scope (mmdet, mmseg, mmengine...), where an unscoped
        # vitdense name is unknown; a build through a vitdense registry means vitdense, so say so.
        if isinstance(cfg, dict) and isinstance(cfg.get('type'), str) and '.' not in cfg['type']:
            cfg = cfg.copy()
            cfg['type'] = f'{self.scope}.{cfg["type"]}'
        return super().build(cfg, *args, **kwargs)


MODELS = _ListingRegistry('model', parent=MMENGINE_MODELS, scope='vitdense',
                          locations=['vitdense.models'])
HOOKS = _ListingRegistry('hook', parent=MMENGINE_HOOKS, scope='vitdense',
                         locations=['vitdense.engine'])
LOOPS = _ListingRegistry('loop', parent=MMENGINE_LOOPS, scope='vitdense', locations=['vitdense.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = _ListingRegistry(
    'optimizer wrapper constructor', parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, scope='vitdense',
    locations=['vitdense.engine'])
OPTIM_WRAPPERS = _ListingRegistry('optimizer wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope='vitdense',
                                  locations=['vitdense.engine'])
