"""Inference on images with vitdense configs + checkpoints, through mmdet's / mmseg's own inferencers.

``mmdet.apis.DetInferencer(model=CONFIG, weights=CKPT)`` and ``mmseg.apis.MMSegInferencer(model=CONFIG,
weights=CKPT)`` work with vitdense configs as they are: the configs carry ``default_scope`` and
``custom_imports`` (imported when the config is read); their test pipelines' loader is :class:`vitdense.LoadImage`
under the name the inferencers replace by their ``InferencerLoader``, which then reads files with it too (a
16-bit file whose data would read nearly black as 8 bits stops with one line naming it); and the checkpoints
``tools/train.py`` writes are ``weights_only``-loadable and hold ``meta.dataset_meta`` (class names, palette), which the inferencers read.

:func:`build_inferencer` adds what a command-line tool needs on top:

* a one-line error for a missing / unreadable / unsafe checkpoint (instead of a torch.load traceback);
* class names and palette from the config's test dataset when the checkpoint has none (a converted or
  hand-saved checkpoint): the inferencers would otherwise fall back to COCO (mmdet) or Cityscapes (mmseg)
  classes, which breaks drawing for a 150-class ADE20K model;
* a model to run on CUDA with mmcv ops built without CUDA stops with one line naming the install command;
* ``score_thr``: a display threshold below the detector's own ``test_cfg`` ``score_thr`` (0.05) also lowers
  the latter, so low-confidence boxes (e.g. of a barely trained model) reach the picture.
"""
import importlib
from typing import Optional

from mmengine.config import Config

from vitdense.errors import UserError
from vitdense.engine.device import check_mmcv_ops_for_device
from vitdense.runtime.config import load_config

INFERENCERS = {'mmdet': ('mmdet.apis', 'DetInferencer'), 'mmseg': ('mmseg.apis', 'MMSegInferencer')}


def lower_score_thresholds(node, threshold: float) -> int:
    """Set every ``score_thr`` in a (nested) test_cfg to at most ``threshold``; returns how many changed."""
    changed = 0
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'score_thr' and isinstance(value, (int, float)) and value > threshold:
                node[key] = threshold
                changed += 1
            else:
                changed += lower_score_thresholds(value, threshold)
    elif isinstance(node, (list, tuple)):
        changed += sum(lower_score_thresholds(v, threshold) for v in node)
    return changed


def dataset_meta_from_config(cfg: Config) -> dict:
    """Class names and palette of the config's test (else val, else train) dataset, without loading data."""
    from mmengine.registry import DATASETS, init_default_scope
    init_default_scope(cfg.default_scope)
    for loader in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        while dataset is not None and ('datasets' in dataset or 'dataset' in dataset):
            dataset = dataset['datasets'][0] if 'datasets' in dataset else dataset['dataset']
        if dataset is not None:
            dataset = dict(dataset, lazy_init=True, pipeline=[])
            meta = DATASETS.build(dataset).metainfo
            return {'classes': meta.get('classes'), 'palette': meta.get('palette')}
    raise UserError('the config names no dataset to take class names from; train the model with '
                    'tools/train.py (its checkpoints carry meta.dataset_meta)')


def checkpoint_dataset_meta(path: str) -> Optional[dict]:
    """``meta.dataset_meta`` of a checkpoint (None if absent); one-line UserError if unreadable."""
    from vitdense.checkpoint import CheckpointError, load_checkpoint_file
    try:
        checkpoint = load_checkpoint_file(path)
    except CheckpointError as err:
        raise UserError(str(err)) from None
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    return (meta or {}).get('dataset_meta') or None


def build_inferencer(config: str, weights: Optional[str], device: Optional[str] = None,
                     cfg_options: Optional[dict] = None, score_thr: Optional[float] = None):
    """mmdet's DetInferencer or mmseg's MMSegInferencer for a vitdense config, by its ``default_scope``."""
    cfg = load_config(config, cfg_options)
    check_mmcv_ops_for_device(device)  # before the checkpoint is read and the model built there
    if cfg.default_scope not in INFERENCERS:
        raise UserError(f"{config}: no inferencer for scope '{cfg.default_scope}' "
                        f'(supported: {sorted(INFERENCERS)})')
    meta = checkpoint_dataset_meta(weights) if weights else None
    if score_thr is not None and cfg.default_scope == 'mmdet':
        lower_score_thresholds(cfg.model.get('test_cfg'), score_thr)
    module, name = INFERENCERS[cfg.default_scope]
    inferencer_cls = getattr(importlib.import_module(module), name)
    inferencer = inferencer_cls(model=cfg, weights=weights, device=device)
    inferencer.show_progress = False  # the tools show one bar over all images instead of one per call
    if meta is None:  # the inferencer guessed COCO / Cityscapes classes: use the config's dataset instead
        meta = dataset_meta_from_config(cfg)
        inferencer.model.dataset_meta = dict(meta)
        visualizer = inferencer.visualizer
        if hasattr(visualizer, 'set_dataset_meta'):  # mmseg's visualizer derives its palette here
            visualizer.set_dataset_meta(classes=meta['classes'], palette=meta['palette'])
        else:
            visualizer.dataset_meta = dict(meta)
    return inferencer
