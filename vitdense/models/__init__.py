"""Importing this package registers every vitdense model component (configs: custom_imports)."""
from .backbones import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
from .roi_align import RoIAlign, roi_align  # noqa: F401
