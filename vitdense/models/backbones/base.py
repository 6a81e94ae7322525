"""The contract every vitdense backbone keeps, whatever its family.

* ``forward(x)`` takes an NCHW image batch of any H x W >= ``min_input_size`` and returns a tuple of NCHW
  maps, one per entry of ``out_indices``, at strides 4 / 8 / 16 / 32 (ceil division for odd sizes), each
  passed through its own output norm.
* ``frozen_stages``: -1 freezes nothing, 0 the stem, k the stem and stages 1..k (with their output norms);
  frozen parts stay in eval mode and get no gradients.
* ``with_cp``: activation checkpointing inside stages; ``drop_path_rate``: stochastic depth, linear over blocks.
* ``get_layer_depth(param_name, mode)`` -> ``(depth, num_depths)`` for layer-wise ('layer_wise') or
  stage-wise ('stage_wise') lr decay; the optimizer constructor asks the backbone, never its class name.
* ``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` loads ImageNet / timm / official / vitdense
  checkpoints through :func:`vitdense.checkpoint.load_pretrained`, which asks the backbone's own
  :meth:`DenseBackbone.adapt_checkpoint` (key remapping, position-table interpolation, what it drops and why)
  and reports it; ``checkpoint=None`` starts from the backbone's own initialisation.

Where a family differs, by design:

* :class:`~vitdense.models.backbones.TimmBackbone`: ``out_indices`` (and ``strides``, ``num_stages``) index the
  timm model's feature levels, which may include a level finer than stride 4 (a ResNet's stride-2 level 0);
  ``frozen_stages`` and the depths keep the stages above: the stem is everything before stride 4.
* :class:`~vitdense.models.backbones.Sequencer2D`: its resampling layers and output norms are new (not
  pretrained) and never freeze; ``pyramid=False`` (classification) returns the trunk's maps at strides
  7 / 14 / 14 / 14.
"""
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from timm.layers import calculate_drop_path_rates

from vitdense.checkpoint.adaptation import CheckpointAdaptation
from vitdense.errors import ConfigError
from ..layers import nhwc_to_nchw


def lookup_arch(owner: str, arch: Union[str, Mapping], settings: Mapping[str, dict], hint: str) -> dict:
    """``arch`` as a settings dict: a name of ``settings`` or a dict passed through; unknown names raise one line
    listing the names and ``hint`` (the dict form, e.g. 'dict(embed_dim=, depths=, num_heads=)')."""
    if isinstance(arch, Mapping):
        return dict(arch)
    if arch not in settings:
        raise ConfigError(f"unknown {owner} arch '{arch}'; choose one of {sorted(settings)} or pass a {hint}")
    return settings[arch]


class DenseBackbone(BaseModule):
    num_stages = 4
    strides = (4, 8, 16, 32)
    arch_settings: Mapping[str, dict] = {}
    arch_hint = 'dict(embed_dim=, depths=, num_heads=)'  # the dict form of ``arch``, for error messages

    def __init__(self, out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1,
                 in_channels: int = 3, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        out_indices = tuple(out_indices)
        bad = [i for i in out_indices if not 0 <= i < self.num_stages]
        if bad or not out_indices:
            raise ConfigError(f'out_indices {out_indices} must be a non-empty subset of 0..{self.num_stages - 1}')
        if not -1 <= frozen_stages <= self.num_stages:
            raise ConfigError(f'frozen_stages={frozen_stages} must lie in -1..{self.num_stages}')
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.in_channels = in_channels

    def resolve_arch(self, arch) -> dict:
        return lookup_arch(type(self).__name__, arch, self.arch_settings, self.arch_hint)

    def build_out_norms(self, norm: Optional[Callable[[int], nn.Module]], channels: Sequence[int]) -> nn.ModuleList:
        """``out_norms``: ``norm(channels[i])`` for the stages in ``out_indices``, Identity for the others (and for
        all when ``norm`` is None)."""
        return nn.ModuleList([norm(c) if norm is not None and i in self.out_indices else nn.Identity()
                              for i, c in enumerate(channels)])

    # ---- input checks -------------------------------------------------------------------------------
    @property
    def min_input_size(self) -> int:
        return self.strides[-1]

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ConfigError(f'{type(self).__name__} expects an N x {self.in_channels} x H x W tensor, '
                              f'got shape {tuple(x.shape)}')
        H, W = x.shape[-2:]
        if min(H, W) < self.min_input_size:
            raise ConfigError(f'{type(self).__name__} got a {H}x{W} input, smaller than its total stride '
                              f'{self.min_input_size}; resize or pad images to at least '
                              f'{self.min_input_size}x{self.min_input_size}')

    # ---- freezing ------------------------------------------------------------------------------------
    def frozen_modules(self) -> List[nn.Module]:
        """Modules to freeze for ``self.frozen_stages`` (stem for 0, plus stages 1..k for k)."""
        raise NotImplementedError

    def nhwc_stage_pyramid(self, x: torch.Tensor, stem: nn.Module,
                           stages: Sequence[nn.Module]) -> Tuple[torch.Tensor, ...]:
        """``forward`` of a stem + stages backbone on NHWC maps: the ``out_indices`` stages' maps through their
        output norms, as NCHW."""
        self.check_input(x)
        x = stem(x)
        outs = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(nhwc_to_nchw(self.out_norms[i](x)))
        return tuple(outs)

    def stem_and_stages(self, stem: nn.Module, stages: Sequence[nn.Module]) -> List[nn.Module]:
        """:meth:`frozen_modules` of a stem + stages backbone: the stem, then stages 1..k with their output norms."""
        mods = [stem]
        for i in range(self.frozen_stages):
            mods += [stages[i], self.out_norms[i]]
        return mods

    def _freeze(self) -> None:
        if self.frozen_stages < 0:
            return
        for module in self.frozen_modules():
            module.eval()
            for p in module.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze()
        return self

    # ---- layer-wise lr decay ---------------------------------------------------------------------------
    def get_layer_depth(self, param_name: str, mode: str = 'layer_wise') -> Tuple[int, int]:
        """Return ``(depth, num_depths)`` of a parameter (name relative to the backbone, any prefix
        such as ``backbone.`` stripped by the caller). Depth 0 is the stem; ``num_depths - 1`` the output
        norms / anything after the last block. Families implement :meth:`param_depth`."""
        if mode not in ('layer_wise', 'stage_wise'):
            raise ConfigError(f"mode must be 'layer_wise' or 'stage_wise', got '{mode}'")
        return self.param_depth(param_name, mode)

    def param_depth(self, param_name: str, mode: str) -> Tuple[int, int]:
        """:meth:`get_layer_depth` of the family, for ``mode`` 'layer_wise' or 'stage_wise' (already checked)."""
        raise NotImplementedError

    def stage_layer_depth(self, param_name: str, mode: str, stem: str, stages: str) -> Tuple[int, int]:
        """:meth:`param_depth` of a stem + stages backbone whose stage i holds ``{stages}.i.blocks.k``
        (``self.depths`` blocks each, anything else in a stage, e.g. its downsampling, going with block 0).
        layer_wise: stem 0, block k (counted over all stages) k + 1, the rest last; stage_wise: stem 0,
        stage i i + 1, the rest last."""
        parts = param_name.split('.')
        num = self.num_stages + 2 if mode == 'stage_wise' else sum(self.depths) + 2
        if parts[0] == stem:
            return 0, num
        if parts[0] != stages:
            return num - 1, num
        stage = int(parts[1])
        if mode == 'stage_wise':
            return stage + 1, num
        block = int(parts[3]) if parts[2] == 'blocks' else 0
        return sum(self.depths[:stage]) + block + 1, num

    # ---- weights -------------------------------------------------------------------------------------
    def adapt_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> CheckpointAdaptation:
        """Map a checkpoint's backbone tensors (any wrapper and ``backbone.`` prefix already taken off) onto this
        backbone's names and shapes, and say what was done: renamed, dropped on purpose and why, resized, notes.

        This default keeps the names as they are. A family overrides it for the layouts it reads (timm, the
        official release, mmdet, ...); a subclass extends its parent's with ``super().adapt_checkpoint(...)``.
        Loading (:func:`vitdense.checkpoint.load_pretrained`) and ``tools/convert_checkpoint.py`` call it and
        print the result as it is; they match the adapted names to the model's afterwards (what is left over is
        reported as having no place, what the checkpoint lacks as missing).
        """
        return CheckpointAdaptation.of(state_dict)

    def init_weights(self):
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            if cfg.get('checkpoint') is None:  # from scratch (the mini configs), still overridable from the CLI
                self.init_cfg = None
                return super().init_weights()
            from vitdense.checkpoint import load_pretrained
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'))
            self._is_init = True
            return
        super().init_weights()


def stochastic_depth(drop_path_rate: float, depths: Iterable[int]) -> List[List[float]]:
    """The one drop-path schedule of every family: rates rising linearly from 0 to ``drop_path_rate`` over all
    blocks (timm's rule and numbers), split per stage (``depths``: blocks per stage; ``[depth]`` for a plain
    ViT)."""
    depths = list(depths)
    rates = calculate_drop_path_rates(drop_path_rate, sum(depths))
    return [rates[sum(depths[:i]):sum(depths[:i + 1])] for i in range(len(depths))]
