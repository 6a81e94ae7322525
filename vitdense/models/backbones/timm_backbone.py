"""Any timm model as a dense backbone: ``TimmBackbone(model_name, out_indices=...)``.

The trunk is ``timm.create_model(model_name, features_only=True, out_indices=...)`` (timm's own feature
extraction: ``FeatureListNet``, ``EfficientNetFeatures``, ``FeatureGetterNet`` for ViT-like models), so every
model timm can cut into feature levels works, with timm's parameter names under ``trunk.``. vitdense adds the
:class:`~vitdense.models.backbones.DenseBackbone` contract on top, generically, from timm's ``feature_info``:

* ``out_indices`` index timm's feature levels (``feature_info``: 5 levels at strides 2..32 for ResNets and
  EfficientNets, 4 at 4..32 for ConvNeXt / Swin-likes). The default takes, for each of the strides 4 / 8 /
  16 / 32, the last level at that stride, i.e. the pyramid FPN / UperNet want.
* outputs are NCHW whatever the model emits: NHWC models (``output_fmt == 'NHWC'``, e.g. Swin, MambaOut)
  are permuted; optional LayerNorm2d output norms (``out_norm=True``), Identity otherwise.
* a "stage" is a feature level. Each module of the trunk belongs to the first level whose module comes at
  or after it in registration order (timm's feature extraction assumes modules are registered in the order
  they run, so this is the order they run in). That gives ``frozen_stages`` (k freezes levels 0..k and
  their output norms; level 0 is the stride-2 stem of a ResNet / EfficientNet) and ``get_layer_depth``:
  level i has depth i, output norms and anything after the last level depth ``num_levels``. There is no
  finer, published per-block grouping for an arbitrary model, so 'layer_wise' equals 'stage_wise'.
* the minimum input size is the stride of the last level in ``out_indices``.

Weights: ``pretrained=True`` lets timm fetch its own weights (needs the HF hub); offline, pass
``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` with a timm / vitdense / other-layout state dict, which
:mod:`vitdense.checkpoint.timm_backbone` maps by name, or by order and shape for foreign layouts.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn
from timm.layers import LayerNorm2d

from vitdense.errors import ConfigError
from vitdense.registry import MODELS
from ..layers import nhwc_to_nchw
from .base import DenseBackbone

PYRAMID_STRIDES = (4, 8, 16, 32)


def default_out_indices(levels: List[dict], timm_default: Sequence[int]) -> Tuple[int, ...]:
    """For each stride in 4 / 8 / 16 / 32 the last level at that stride; timm's default if none match."""
    picked = [max(i for i, info in enumerate(levels) if info['reduction'] == s)
              for s in PYRAMID_STRIDES if any(info['reduction'] == s for info in levels)]
    return tuple(picked) if picked else tuple(timm_default)


def module_spans(root: nn.Module) -> Dict[str, Tuple[int, int]]:
    """Pre-order (registration-order) position of every submodule and of its last descendant."""
    spans, order = {}, []

    def visit(module, name):
        start = len(order)
        order.append(name)
        for child_name, child in module.named_children():
            visit(child, f'{name}.{child_name}' if name else child_name)
        spans[name] = (start, len(order) - 1)

    visit(root, '')
    return spans


def locate(feature_module: str, spans: Dict[str, Tuple[int, int]]) -> Optional[str]:
    """The trunk's name of a ``feature_info`` module: as is, flattened by FeatureListNet ('stages.0' ->
    'stages_0') or wrapped by FeatureGetterNet ('model.blocks.3')."""
    for candidate in (feature_module, feature_module.replace('.', '_', 1), f'model.{feature_module}'):
        if candidate in spans:
            return candidate
    return None


@MODELS.register_module()
class TimmBackbone(DenseBackbone):
    """A timm model's feature levels as a DenseBackbone.

    Args:
        model_name: any timm model that supports ``features_only=True`` (``timm.list_models()``).
        pretrained: let timm download its weights (needs internet); offline use ``init_cfg``.
        out_indices: feature levels to return (negative counts from the end); default: the levels at
            strides 4 / 8 / 16 / 32.
        out_norm: put a LayerNorm2d on every returned map (Swin / ConvNeXt style); default False.
        frozen_stages: -1 nothing; k freezes feature levels 0..k.
        norm_eval: keep every BatchNorm in eval mode while training (frozen statistics), the usual choice
            for CNN backbones fine-tuned on detection with a few images per GPU.
        with_cp: activation checkpointing where the timm model supports it.
        **model_kwargs: passed to ``timm.create_model`` (e.g. ``drop_path_rate``, ``img_size``).
    """

    def __init__(self, model_name: str, pretrained: bool = False, out_indices: Optional[Sequence[int]] = None,
                 out_norm: bool = False, frozen_stages: int = -1, norm_eval: bool = False, in_channels: int = 3,
                 with_cp: bool = False, init_cfg=None, **model_kwargs):
        if not timm.is_model(model_name):
            raise ConfigError(f"'{model_name}' is not a timm model name; see timm.list_models('*pattern*')")
        model_kwargs = dict(model_kwargs, in_chans=in_channels)
        with torch.device('meta'):  # cheap probe: how many levels, at which strides
            probe = timm.create_model(model_name, pretrained=False, features_only=True, **model_kwargs)
        levels = [dict(info) for info in probe.feature_info.info]
        self.num_stages = len(levels)
        if out_indices is None:
            out_indices = default_out_indices(levels, probe.feature_info.out_indices)
        out_indices = tuple(i % self.num_stages if -self.num_stages <= i < 0 else i for i in out_indices)
        super().__init__(out_indices, frozen_stages, in_channels, init_cfg)
        self.model_name = model_name
        self.norm_eval = norm_eval
        try:
            self.trunk = timm.create_model(model_name, pretrained=pretrained, features_only=True,
                                           out_indices=self.out_indices, **model_kwargs)
        except Exception as err:
            if not pretrained:
                raise
            raise ConfigError(f'timm could not fetch pretrained weights for {model_name} ({type(err).__name__}); '
                              'offline, download the checkpoint and pass '
                              "init_cfg=dict(type='Pretrained', checkpoint=PATH) with pretrained=False") from None
        self.levels = levels
        self.strides = tuple(info['reduction'] for info in levels)
        self.num_features = [info['num_chs'] for info in levels]
        self.channels_last = str(getattr(self.trunk, 'output_fmt', 'NCHW')).endswith('NHWC')
        self.out_norms = self.build_out_norms(LayerNorm2d if out_norm else None, self.num_features)
        if with_cp and hasattr(self.trunk, 'set_grad_checkpointing'):
            self.trunk.set_grad_checkpointing(True)
        self._index_levels()
        self._freeze()

    # ---- which feature level each module / parameter belongs to ------------------------------------------
    def _index_levels(self) -> None:
        self._spans = module_spans(self.trunk)
        ends = []
        for info in self.levels[:max(self.out_indices) + 1]:  # the trunk stops after the last returned level
            name = locate(info['module'], self._spans)
            ends.append(self._spans[name][1] if name is not None else (ends[-1] if ends else -1))
        self._level_ends = ends
        self._param_level = {}
        for name, _ in list(self.trunk.named_parameters()) + list(self.trunk.named_buffers()):
            owner = name.rsplit('.', 1)[0] if '.' in name else ''
            self._param_level[name] = self._level_of(self._spans[owner][0])

    def _level_of(self, position: int) -> int:
        return next((i for i, end in enumerate(self._level_ends) if position <= end), self.num_stages)

    @property
    def min_input_size(self) -> int:
        return self.strides[max(self.out_indices)]

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self.check_input(x)
        feats = self.trunk(x)
        if self.channels_last:
            feats = [nhwc_to_nchw(f) for f in feats]
        return tuple(self.out_norms[i](f) for i, f in zip(self.out_indices, feats))

    # ---- freezing --------------------------------------------------------------------------------------
    def frozen_modules(self) -> List[nn.Module]:
        """The largest trunk modules lying wholly in levels 0..frozen_stages, and their output norms."""
        last = self._level_ends[min(self.frozen_stages, len(self._level_ends) - 1)]
        mods, taken_until = [], -1
        for name, module in self.trunk.named_modules():
            start, end = self._spans[name]
            if start <= taken_until or end > last:
                continue
            mods.append(module)
            taken_until = end
        return mods + [self.out_norms[i] for i in range(min(self.frozen_stages + 1, self.num_stages))]

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.norm_eval:
            for module in self.trunk.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def _freeze(self) -> None:
        super()._freeze()
        if self.frozen_stages >= 0:  # parameters held directly by a container that spans later levels
            for name, p in self.trunk.named_parameters():
                if self._param_level[name] <= self.frozen_stages:
                    p.requires_grad = False

    # ---- lr decay --------------------------------------------------------------------------------------
    def get_layer_depth(self, param_name: str, mode: str = 'layer_wise') -> Tuple[int, int]:
        """Level i -> depth i; output norms and anything past the last level -> ``num_levels``.
        'layer_wise' is 'stage_wise' here (no per-block grouping is known for an arbitrary model)."""
        if mode not in ('layer_wise', 'stage_wise'):
            raise ConfigError(f"mode must be 'layer_wise' or 'stage_wise', got '{mode}'")
        num = self.num_stages + 1
        if param_name.startswith('trunk.'):
            return min(self._param_level.get(param_name[len('trunk.'):], num - 1), num - 1), num
        return num - 1, num
