"""Whole training iterations of a config next to a reference config's, on the same batches and weights.

Used by ``tools/benchmark.py --train --compare``. The reference is a detector config of the OpenMMLab package
itself (mmdet's ``swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py`` for vitdense's Swin-T Mask R-CNN), pointed at
the vitdense config's data and recipe: its train pipeline and batches, its lr and seed. Both models start
from the same weights (the reference's initialisation, its Swin backbone converted to vitdense's layout), so
they draw the same proposals and train on the same RoIs, and each iteration does the same work in both.
"""
import copy
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from vitdense.errors import UserError

# vitdense config (basename) -> the OpenMMLab config that trains the same model
REFERENCE_CONFIGS = {
    'mask-rcnn_swin-t-p4-w7_fpn_mini-coco': 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
}


def openmmlab_config_path(name: str) -> str:
    """``mmdet::swin/x.py`` -> the file inside the installed package (``mmdet/.mim/configs/swin/x.py``)."""
    if '::' not in name:
        return name
    package, rel = name.split('::', 1)
    module = __import__(package)
    path = osp.join(osp.dirname(module.__file__), '.mim', 'configs', rel)
    if not osp.isfile(path):
        raise UserError(f'{name}: no such config in the installed {package} ({path})')
    return path


def reference_config(cfg, reference: str):
    """The reference config with ``cfg``'s training data, optimiser lr and seed, and no pretrained download."""
    from mmengine import Config
    ref = Config.fromfile(openmmlab_config_path(reference))
    ref.train_dataloader = copy.deepcopy(cfg.train_dataloader)
    ref.optim_wrapper.optimizer.lr = cfg.optim_wrapper.optimizer.lr
    ref.randomness = copy.deepcopy(cfg.get('randomness', dict(seed=0)))
    ref.model.backbone.init_cfg = None  # the weights come from copy_weights, not from a download
    return ref


def build_trainer(cfg) -> Tuple[nn.Module, object]:
    """(model in train mode with its init_weights applied, optimiser wrapper) as the runner would build them."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    from vitdense.runtime.config import scope_registry
    scope = DefaultScope.get_instance(f'benchmark-{id(cfg)}', scope_name=cfg.default_scope)
    with DefaultScope.overwrite_default_scope(scope.scope_name):
        model = scope_registry(cfg.default_scope).build(cfg.model)
        model.init_weights()
        model.train()
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    return model, optim_wrapper


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """``source``'s weights into ``target``: the backbone through the target backbone's ``adapt_checkpoint``, the
    rest by name. Raises if any tensor of ``target`` is left without a value."""
    state = source.state_dict()
    backbone = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    converted = target.backbone.adapt_checkpoint(backbone).state_dict
    merged = {f'backbone.{k}': v for k, v in converted.items()}
    merged.update({k: v for k, v in state.items() if not k.startswith('backbone.')})
    missing, unexpected = target.load_state_dict(merged, strict=False)
    missing = [k for k in missing if not k.endswith('relative_position_index')]
    if missing or unexpected:
        raise RuntimeError(f'weights do not map one to one: missing {missing[:5]}, unexpected {unexpected[:5]}')


@dataclass
class IterationTimes:
    wall: List[float] = field(default_factory=list)
    cpu: List[float] = field(default_factory=list)
    losses: List[float] = field(default_factory=list)


def _time_interleaved(steps: Dict[str, Callable[[dict], Optional[float]]], batches: list, repeats: int,
                      warmup: int) -> Dict[str, IterationTimes]:
    """Every step (a function of a batch returning its loss, or None) on every batch, interleaved (a, b, a, b,
    ...) so that a change of machine load hits all alike; ``warmup`` untimed rounds first."""
    times = {label: IterationTimes() for label in steps}
    for round_ in range(warmup + repeats):
        for batch in batches:
            for label, step in steps.items():
                wall, cpu = time.perf_counter(), time.process_time()
                loss = step(copy.copy(batch))
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                if round_ >= warmup:
                    times[label].wall.append(wall)
                    times[label].cpu.append(cpu)
                    if loss is not None:
                        times[label].losses.append(loss)
    return times


def time_train_steps(trainers: Dict[str, Tuple[nn.Module, object]], batches: list, repeats: int,
                     warmup: int = 1) -> Dict[str, IterationTimes]:
    """``model.train_step`` of every trainer on every batch, interleaved; one entry per batch and repeat."""
    def train_step(model, optim_wrapper):
        return lambda batch: float(model.train_step(batch, optim_wrapper)['loss'])
    return _time_interleaved({label: train_step(*trainer) for label, trainer in trainers.items()}, batches,
                             repeats, warmup)


def train_precision(cfg) -> Optional[torch.dtype]:
    """The autocast dtype ``cfg``'s optimiser wrapper trains in (None: float32)."""
    wrapper = str(cfg.optim_wrapper.get('type', 'OptimWrapper'))
    if wrapper.endswith('BF16AutocastOptimWrapper'):
        return torch.bfloat16
    if wrapper.endswith('AmpOptimWrapper'):
        return getattr(torch, str(cfg.optim_wrapper.get('dtype') or 'float16'))
    return None


def test_precision(cfg) -> Optional[torch.dtype]:
    """The autocast dtype ``cfg``'s test loop runs the network in (None: float32)."""
    return torch.bfloat16 if str((cfg.get('test_cfg') or {}).get('type', '')).endswith('BF16TestLoop') else None


def time_test_steps(models: Dict[str, nn.Module], batches: list, repeats: int, warmup: int = 1,
                    dtypes: Optional[Dict[str, Optional[torch.dtype]]] = None) -> Dict[str, IterationTimes]:
    """``model.test_step`` (preprocessing, forward, post-processing: what ``tools/test.py`` runs per batch, less
    data loading and the metric) of every model on every batch, interleaved; ``losses`` stays empty. A model with
    a dtype in ``dtypes`` runs as ``vitdense.BF16TestLoop`` runs it (:func:`autocast_network`)."""
    from vitdense.engine.mixed_precision import autocast_network

    def test_step(model, dtype):
        def step(batch):
            if dtype is None:
                model.test_step(batch)  # no loss to report
            else:
                with autocast_network(model, dtype):
                    model.test_step(batch)
        return step
    with torch.no_grad():
        return _time_interleaved({label: test_step(model, (dtypes or {}).get(label))
                                  for label, model in models.items()}, batches, repeats, warmup)


def first_batches(cfg, count: int, split: str = 'train') -> list:
    """The first ``count`` batches of ``cfg``'s ``split`` ('train' or 'test') loader (its seed, sampler and
    pipeline)."""
    from mmengine.runner import Runner
    seed = cfg.get('randomness', {}).get('seed', 0)
    loader = Runner.build_dataloader(copy.deepcopy(cfg[f'{split}_dataloader']), seed=seed)
    iterator = iter(loader)
    return [next(iterator) for _ in range(count)]


def seed_everything(seed: int) -> None:
    from mmengine.runner import set_random_seed
    set_random_seed(seed)
    torch.manual_seed(seed)
