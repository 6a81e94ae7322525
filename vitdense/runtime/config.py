"""The one way vitdense reads a config and builds the model it describes.

:func:`load_config` is what every tool, ``vitdense.load_config``, ``vitdense.get_model`` and the transfer evaluation
read configs with: a file or a shipped config name, ``vitdense::`` bases included (see :mod:`vitdense.zoo`), checked
and given a ``work_dir``. :func:`build_model` builds a config's model (or backbone, or any model dict) in its
toolbox's registry.
"""
import importlib
import math
import os.path as osp
from typing import Optional, Union

import torch
from mmengine.config import Config, ConfigDict, DictAction  # noqa: F401  (DictAction re-exported for the tools)

from vitdense.errors import ConfigError, UserError

TASKS = {'mmdet': 'detection', 'mmseg': 'segmentation', 'mmpretrain': 'classification'}


def load_config(name_or_path: str, cfg_options: Optional[dict] = None, work_dir: Optional[str] = None,
                runnable: bool = True) -> Config:
    """A config file or shipped config name (``swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco``), ``vitdense::`` bases
    included, ``cfg_options`` merged, checked to be a whole vitdense config and given a ``work_dir``. With
    ``runnable=False`` (tools that only read ``model``, e.g. the checkpoint converter) a ``_base_`` model fragment
    is accepted as it is."""
    from vitdense.zoo import drop_vitdense_scope, enable_config_prefix, resolve_config
    path = resolve_config(name_or_path)
    enable_config_prefix()
    cfg = Config.fromfile(path)
    drop_vitdense_scope(cfg._cfg_dict)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if not runnable:
        return cfg
    if cfg.get('default_scope') not in TASKS:
        fragment = ' (a _base_ fragment?)' if 'model' not in cfg else ''
        raise UserError(f"{path} sets default_scope={cfg.get('default_scope')!r}{fragment}; vitdense configs inherit "
                        'a runtime from configs/_base_/default_runtime_{det,seg,cls}.py')
    if not isinstance(cfg.get('model'), dict):
        raise UserError(f'{path} defines no model (a _base_ fragment?); pass a full config')
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def scope_registry(scope: str):
    """The MODELS registry of an OpenMMLab scope ('mmdet' / 'mmseg' / 'mmpretrain'), made the default scope."""
    from mmengine.registry import init_default_scope
    try:
        module = importlib.import_module(f'{scope}.registry')
    except ImportError as err:
        extra = ' (pip install "vitdense[cls]")' if scope == 'mmpretrain' else ''
        raise UserError(f'a {scope} config needs {scope}, which is not installed{extra}: {err}') from None
    init_default_scope(scope)
    return module.MODELS


class _LargeTensorsOnMeta(torch.overrides.TorchFunctionMode):
    """Allocate tensors of ``min_numel`` or more elements (weights) on the meta device, the rest on the CPU.

    Weights then cost no memory and no init time (initialisers are no-ops on meta), while the small tensors
    constructors read values from (drop-path ``linspace(...).tolist()``, index tables) stay real.
    """
    FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.empty_strided}

    def __init__(self, min_numel: int = 4096):
        super().__init__()
        self.min_numel = min_numel

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.FACTORIES and kwargs.get('device') is None and args:
            size = args[0] if isinstance(args[0], (tuple, list, torch.Size)) else args
            if all(isinstance(n, int) for n in size) and math.prod(size) >= self.min_numel:
                kwargs['device'] = 'meta'
        return func(*args, **kwargs)


def build_model(cfg: Union[Config, dict], backbone_only: bool = False, weights_on_meta: bool = False,
                load_init_cfg: bool = False):
    """The model a config describes, in eval mode on the CPU.

    ``cfg``: a whole config (its ``model``, or with ``backbone_only`` its ``model.backbone``, built in the registry of
    its ``default_scope``), or a model dict of vitdense's registry (a backbone: ``type='vitdense.X'`` or a bare
    vitdense name). Weights are the modules' own initialisation: pretrained weights an ``init_cfg`` names are loaded
    only with ``load_init_cfg`` (``init_weights()``). ``weights_on_meta``: large tensors go to the meta device --
    enough to count parameters and FLOPs, several times faster to build, but the model cannot run on real data
    (building wholly on meta is not an option: constructors read tensor values); a constructor that cannot cope
    is built again for real.
    """
    if isinstance(cfg, Config):
        models = scope_registry(cfg.default_scope)
        model_cfg = cfg.model.backbone if backbone_only else cfg.model
    elif isinstance(cfg, dict):
        import vitdense.models  # noqa: F401  (registers the backbones)
        from vitdense.registry import MODELS as models
        model_cfg = cfg
    else:
        raise TypeError(f'build_model takes an mmengine Config or a model dict, got {type(cfg).__name__}')
    if not isinstance(model_cfg, dict) or 'type' not in model_cfg:
        raise ConfigError(f'no model to build: {"model.backbone" if backbone_only else "model"} is {model_cfg!r}')
    model_cfg = ConfigDict(model_cfg)
    model = None
    if weights_on_meta:
        try:
            with _LargeTensorsOnMeta():
                model = models.build(model_cfg.copy())
        except Exception:  # a constructor mixing values and weights: build for real
            model = None
    if model is None:
        model = models.build(model_cfg.copy())
    if load_init_cfg and model_cfg.get('init_cfg'):
        model.init_weights()
    model.eval()  # (not chained: some train() overrides return None)
    return model
