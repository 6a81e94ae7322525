"""Every backbone family is one module of this package. Importing the package imports them all, which registers
each family's classes in vitdense's ``MODELS`` registry and exports them here by name
(``from vitdense.models.backbones import SwinTransformer``): a new family needs no line in this file."""
import importlib
import pkgutil

from vitdense.registry import MODELS
from .base import DenseBackbone

for _family in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_family.name}')

_REGISTERED = {name: cls for name, cls in MODELS.module_dict.items() if cls.__module__.startswith(f'{__name__}.')}
globals().update(_REGISTERED)
__all__ = ['DenseBackbone'] + sorted(_REGISTERED)
