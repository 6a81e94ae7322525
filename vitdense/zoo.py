"""The configs vitdense ships, the model index, and the Python API: ``list_models``, ``get_model``.

The installed package carries ``vitdense/.mim/{configs,tools,data/mini,model-index.yml}`` (symbolic links to the
checkout's folders there, copies in a wheel), the layout mmengine reads for a ``pkg::`` config prefix, so a
config anywhere can inherit a vitdense one::

    _base_ = 'vitdense::swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py'

Two things make that prefix work, both done by :func:`vitdense.runtime.config.load_config` (every vitdense tool,
``vitdense.load_config`` and ``vitdense.get_model`` read configs through it):

* mmengine only accepts prefixes listed in ``mmengine.config.utils.MODULE2PACKAGE``; :func:`enable_config_prefix`
  adds ``vitdense`` there. Its value names the module ``vitdense.zoo`` rather than the distribution: mmengine
  looks a distribution up by its install location, which for an editable install (PEP 660) is site-packages,
  not the checkout; a module name makes it fall back to the module's own folder, right for every kind of
  install and for ``PYTHONPATH``.
* mmengine marks every object a ``pkg::`` base defines with ``_scope_=pkg``, right for an mmdet base in another
  toolbox and wrong here: vitdense configs are mmdet / mmseg / mmpretrain configs that name vitdense's own parts
  by their scoped type (``vitdense.SwinTransformer``). :func:`drop_vitdense_scope` removes those marks, so the
  objects build in the config's ``default_scope``.

A plain ``mmengine.config.Config.fromfile`` of a config with a ``vitdense::`` base therefore needs
``vitdense.load_config(path)`` instead (or ``import vitdense.zoo; vitdense.zoo.enable_config_prefix()`` first, and
:func:`drop_vitdense_scope` on the result).
"""
import difflib
import fnmatch
import os
import os.path as osp
import re
from functools import lru_cache
from typing import Dict, List, Optional

from vitdense.errors import UserError

PACKAGE_DIR = osp.dirname(osp.abspath(__file__))
MIM_DIR = osp.join(PACKAGE_DIR, '.mim')
CONFIG_DIR = osp.join(MIM_DIR, 'configs')
TOOLS_DIR = osp.join(MIM_DIR, 'tools')
MODEL_INDEX = osp.join(MIM_DIR, 'model-index.yml')
PREFIX = 'vitdense::'


# ---- shipped configs ----------------------------------------------------------------------------------------

def shipped_configs() -> Dict[str, str]:
    """``{name: absolute path}`` of every shipped config (``_base_`` skipped); a name is the path under configs/
    without ``.py``, e.g. ``swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco``."""
    return dict(_shipped_configs())


@lru_cache(maxsize=1)
def _shipped_configs() -> Dict[str, str]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(CONFIG_DIR, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d != '_base_' and not d.startswith(('.', '__')))
        for filename in sorted(filenames):
            if filename.endswith('.py'):
                path = osp.join(dirpath, filename)
                found[osp.relpath(path, CONFIG_DIR)[:-3].replace(os.sep, '/')] = path
    return found


def _matches(name: str, pattern: Optional[str]) -> bool:
    """A glob (``*``, ``?``, ``[``) matches the whole name or its basename; other text is a substring."""
    if not pattern:
        return True
    if any(c in pattern for c in '*?['):
        return fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(name.rsplit('/', 1)[-1], pattern)
    return pattern in name


def list_configs(pattern: Optional[str] = None) -> List[str]:
    """Names of the shipped configs containing ``pattern`` (or matching it, as a glob), sorted."""
    return [name for name in shipped_configs() if _matches(name, pattern)]


def find_config(name: str) -> Optional[str]:
    """Path of the shipped config ``name`` names, or None: ``swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco`` (with or
    without ``.py``, ``configs/`` or ``vitdense::`` in front) or its unique basename."""
    key = name[len(PREFIX):] if name.startswith(PREFIX) else name
    key = key.replace(os.sep, '/')
    key = key[:-3] if key.endswith('.py') else key
    key = key[len('configs/'):] if key.startswith('configs/') else key
    configs = shipped_configs()
    if key in configs:
        return configs[key]
    by_basename = [path for n, path in configs.items() if n.rsplit('/', 1)[-1] == key]
    return by_basename[0] if len(by_basename) == 1 else None


def resolve_config(name_or_path: str) -> str:
    """An existing config file as given, else the shipped config its name names; one-line UserError otherwise."""
    if osp.isfile(name_or_path):
        return name_or_path
    found = find_config(name_or_path)
    if found is not None:
        return found
    names = list(shipped_configs())
    stem = osp.splitext(name_or_path.replace(os.sep, '/'))[0]
    close = difflib.get_close_matches(stem, names, n=3, cutoff=0.6) or difflib.get_close_matches(
        stem.rsplit('/', 1)[-1], [n.rsplit('/', 1)[-1] for n in names], n=3, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else '; vitdense list-configs shows the shipped configs'
    raise UserError(f'config not found: {name_or_path} (neither a file nor a shipped config name){hint}')


# ---- the vitdense:: prefix ----------------------------------------------------------------------------------

def enable_config_prefix() -> None:
    """Let mmengine resolve ``vitdense::PATH`` to ``vitdense/.mim/configs/PATH`` (see the module docstring)."""
    from mmengine.config.utils import MODULE2PACKAGE
    MODULE2PACKAGE.setdefault('vitdense', __name__)


def drop_vitdense_scope(node, marked_here: bool = True) -> int:
    """Remove the ``_scope_='vitdense'`` marks mmengine puts on what a ``vitdense::`` base defines; returns how
    many were removed.

    mmengine marks the outermost dicts with a ``type`` only (a dataset, not the pipeline steps inside it), so only
    those lose the mark: a scope a config sets itself further in, e.g. the test pipelines' vitdense loader
    (``dict(type='LoadImageFromFile', _scope_='vitdense')``), is kept."""
    removed = 0
    if isinstance(node, dict):
        if marked_here and 'type' in node:
            if node.get('_scope_') == 'vitdense':
                del node['_scope_']
                removed += 1
            marked_here = False
        for value in node.values():
            removed += drop_vitdense_scope(value, marked_here)
    elif isinstance(node, (list, tuple)):
        removed += sum(drop_vitdense_scope(value, marked_here) for value in node)
    return removed


# ---- models -------------------------------------------------------------------------------------------------

_DETECTOR = re.compile(r'^mask-rcnn_(?P<backbone>.+)_fpn_(?P<schedule>1x_coco|mini-coco)$')
# patch / window / output-stride suffixes the short backbone names leave out: swin-t-p4-w7 -> swin-t
_LAYOUT_SUFFIX = re.compile(r'(-[ps]\d+)?(-w\d+)?$')


def backbones() -> Dict[str, str]:
    """``{backbone name: config name}``: each backbone as its Mask R-CNN 1x config (else the mini-COCO one)
    builds it, named by the config's backbone part (``swin-t-p4-w7``) and, shorter, without its patch / window
    suffixes (``swin-t``)."""
    chosen = {}
    for name in shipped_configs():
        found = _DETECTOR.match(name.rsplit('/', 1)[-1])
        if found and (found['backbone'] not in chosen or found['schedule'] == '1x_coco'):
            chosen[found['backbone']] = name
    names = {}
    for backbone, config in sorted(chosen.items()):
        names[backbone] = config
        names.setdefault(_LAYOUT_SUFFIX.sub('', backbone), config)
    return names


def list_models(pattern: Optional[str] = None) -> List[str]:
    """What :func:`get_model` builds: backbone names (``swin-t``, ...) then shipped config names, filtered like
    :func:`list_configs`."""
    return sorted(name for name in backbones() if _matches(name, pattern)) + list_configs(pattern)


def get_model(name_or_config: str, pretrained: Optional[str] = None, device: str = 'cpu'):
    """A vitdense backbone (``'swin-t'``, see :func:`list_models`) or a whole detector / segmentor / classifier
    (a shipped config name or a config file), in eval mode on ``device``.

    ``pretrained``: for a backbone, any checkpoint its family reads (timm, official, mmdet, vitdense); for a
    whole model, the checkpoint ``vitdense train`` wrote for that config (every tensor must fit), or a backbone
    checkpoint, loaded into its backbone. Without it the weights are the modules' own initialisation: vitdense's
    choice is not to load the ImageNet checkpoint a config's ``init_cfg`` names (a path under checkpoints/
    that a fresh install does not have).
    """
    from vitdense.runtime.config import build_model, load_config
    named_backbone = backbones().get(name_or_config)
    cfg = load_config(named_backbone or name_or_config)
    if named_backbone is not None:
        model = build_model(dict(cfg.model.backbone, init_cfg=None))
        _initialise(model, pretrained, backbone=model)
    else:
        if isinstance(cfg.model.get('backbone'), dict):
            cfg.model.backbone.init_cfg = None
        model = build_model(cfg)
        _initialise(model, pretrained, backbone=getattr(model, 'backbone', None))
    return model.to(device).eval()


def _initialise(model, pretrained: Optional[str], backbone) -> None:
    import logging

    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs one INFO entry per parameter
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    if not pretrained:
        return
    from vitdense.checkpoint import extract_state_dict, is_full_model, load_checkpoint_file, load_pretrained
    from vitdense.checkpoint.io import check_fits
    if backbone is model:
        load_pretrained(model, pretrained)
        return
    checkpoint = load_checkpoint_file(pretrained)
    state_dict = extract_state_dict(checkpoint, pretrained)
    if is_full_model(state_dict) or backbone is None:
        check_fits(model, checkpoint, pretrained)
        model.load_state_dict(state_dict)
    else:
        load_pretrained(backbone, pretrained)


# ---- model index --------------------------------------------------------------------------------------------

def model_index() -> Dict[str, dict]:
    """``{config name: entry}`` from model-index.yml and the per-family metafile.yml files it imports."""
    from mmengine.fileio import load
    index = load(MODEL_INDEX)
    entries = {}
    for metafile in index['Import']:
        for model in load(osp.join(MIM_DIR, metafile))['Models']:
            entries[model['Config'][len('configs/'):-len('.py')]] = model
    return entries
