"""Any timm model as a dense backbone: ``TimmBackbone(model_name, out_indices=...)``.

The trunk is ``timm.create_model(model_name, features_only=True, out_indices=...)`` (timm's own feature
extraction: ``FeatureListNet``, ``EfficientNetFeatures``, ``FeatureGetterNet`` for ViT-like models), so every
model timm can cut into feature levels works, with timm's parameter names under ``trunk.``. vitdense adds the
:class:`~vitdense.models.backbones.DenseBackbone` contract on top, generically, from timm's ``feature_info``:

* ``out_indices`` index timm's feature levels (``feature_info``: 5 levels at strides 2..32 for ResNets and
  EfficientNets, 4 at 4..32 for ConvNeXt / Swin-likes), so a level finer than stride 4 can be returned too:
  the difference from the contract, which :mod:`~vitdense.models.backbones.base` names. The default takes,
  for each of the strides 4 / 8 / 16 / 32, the last level at that stride, i.e. the pyramid FPN / UperNet want.
* outputs are NCHW whatever the model emits: NHWC models (``output_fmt == 'NHWC'``, e.g. Swin, MambaOut)
  are permuted; optional LayerNorm2d output norms (``out_norm=True``), Identity otherwise.
* stages as the contract counts them: the stem is everything before stride 4 (the stride-2 level 0 of a
  ResNet / EfficientNet; the modules before the first level where levels start at stride 4, e.g. ConvNeXt's
  ``stem``), stage k the k-th level at stride 4 or more. Each module of the trunk belongs to the first level
  whose module comes at or after it in registration order (timm's feature extraction assumes modules are
  registered in the order they run, so this is the order they run in). That gives ``frozen_stages`` as for
  every backbone (0 the stem, k the stem and stages 1..k, with the output norms of their levels) and
  ``get_layer_depth``: the stem depth 0, stage k depth k, output norms and anything after the last level
  the last depth. There is no finer, published per-block grouping for an arbitrary model, so 'layer_wise'
  equals 'stage_wise'.
* the minimum input size is the stride of the last level in ``out_indices``.

Weights: ``pretrained=True`` lets timm fetch its own weights (needs the HF hub); offline, pass
``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` with a timm / vitdense / other-layout state dict, which
:meth:`TimmBackbone.adapt_checkpoint` maps by name, or by order and shape for foreign layouts.
"""
import re
from typing import Dict, List, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn
from timm.layers import LayerNorm2d

from vitdense.checkpoint.adaptation import CheckpointAdaptation
from vitdense.errors import CheckpointError, ConfigError
from vitdense.registry import MODELS
from ..cpu_layers import use_fast_cpu_layers
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
        frozen_stages: -1 nothing, 0 the stem (everything before stride 4), k the stem and the first k levels
            at stride 4 or more (see the module doc).
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
        # the contract's stages: the stem (the levels before stride 4, or none), then one per level
        self.stem_levels = next((i for i, info in enumerate(levels) if info['reduction'] >= 4), len(levels))
        self.num_dense_stages = len(levels) - self.stem_levels
        self.level_stages = [max(i - self.stem_levels + 1, 0) for i in range(len(levels))]
        if frozen_stages > self.num_dense_stages:
            raise ConfigError(f'frozen_stages={frozen_stages}: {model_name} has the stem and '
                              f'{self.num_dense_stages} stages (feature levels at strides '
                              f'{[info["reduction"] for info in levels[self.stem_levels:]]}); use -1..'
                              f'{self.num_dense_stages}')
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
        use_fast_cpu_layers(self)
        self._freeze()

    # ---- which stage each module / parameter belongs to ---------------------------------------------------
    def _index_levels(self) -> None:
        """The registration-order position where each stage ends, and the stage of every parameter / buffer."""
        self._spans = module_spans(self.trunk)
        level_ends = []
        for info in self.levels[:max(self.out_indices) + 1]:  # the trunk stops after the last returned level
            name = locate(info['module'], self._spans)
            level_ends.append(self._spans[name][1] if name is not None else (level_ends[-1] if level_ends else -1))
        if self.stem_levels:
            stem_end = level_ends[min(self.stem_levels, len(level_ends)) - 1]
        else:  # the modules before the first level's
            first = locate(self.levels[0]['module'], self._spans)
            stem_end = self._spans[first][0] - 1 if first is not None else -1
        self._stage_ends = [stem_end] + level_ends[self.stem_levels:]
        self._param_stage = {}
        for name, _ in list(self.trunk.named_parameters()) + list(self.trunk.named_buffers()):
            owner = name.rsplit('.', 1)[0] if '.' in name else ''
            self._param_stage[name] = self._stage_of(self._spans[owner][0])

    def _stage_of(self, position: int) -> int:
        return next((k for k, end in enumerate(self._stage_ends) if position <= end), self.num_dense_stages + 1)

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
        """The largest trunk modules lying wholly in stages 0..frozen_stages, and their levels' output norms."""
        last = self._stage_ends[min(self.frozen_stages, len(self._stage_ends) - 1)]
        mods, taken_until = [], -1
        for name, module in self.trunk.named_modules():
            start, end = self._spans[name]
            if start <= taken_until or end > last:
                continue
            mods.append(module)
            taken_until = end
        return mods + [norm for norm, stage in zip(self.out_norms, self.level_stages) if stage <= self.frozen_stages]

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
                if self._param_stage[name] <= self.frozen_stages:
                    p.requires_grad = False

    # ---- lr decay --------------------------------------------------------------------------------------
    def param_depth(self, param_name: str, mode: str) -> Tuple[int, int]:
        """The stem -> 0, stage k -> k; output norms and anything past the last level -> the last depth
        (``num_dense_stages + 1``). 'layer_wise' is 'stage_wise' here (no per-block grouping is known for an
        arbitrary model)."""
        num = self.num_dense_stages + 2
        if param_name.startswith('trunk.'):
            return min(self._param_stage.get(param_name[len('trunk.'):], num - 1), num - 1), num
        return num - 1, num

    # ---- checkpoints ---------------------------------------------------------------------------------------
    def adapt_checkpoint(self, state_dict: Dict[str, torch.Tensor]) -> CheckpointAdaptation:
        """Three layouts, tried in this order:

        1. vitdense's own (``trunk.*`` keys, e.g. the backbone part of a vitdense classifier): used as is.
        2. timm's (the full classification model's ``state_dict``): each trunk parameter is looked up under its
           timm name. timm's feature wrappers rename a little (``FeatureListNet`` flattens ``stages.0`` into
           ``stages_0``; ``FeatureGetterNet`` nests the model under ``model.``), which is undone here.
        3. any other layout of the same network (e.g. lukemelas' EfficientNet-PyTorch names ``_conv_stem`` /
           ``_blocks.0._depthwise_conv`` for timm's ``conv_stem`` / ``blocks.0.0.conv_dw``): the trunk's tensors
           are matched to the checkpoint's in order, every shape must agree. The first disagreement is an error
           naming both tensors. Matching by order is only as right as the two orders are alike, so the notes say
           it happened: check a prediction after converting.

        What the trunk has no place for (the classifier, layers past the last returned level) keeps its name,
        and loading reports it as having no place in the backbone.
        """
        adaptation = super().adapt_checkpoint(state_dict)
        keys = adaptation.state_dict
        own = [(k, v.shape) for k, v in self.state_dict().items() if k.startswith(TRUNK)]
        if any(k.startswith(TRUNK) for k in keys):
            return adaptation
        by_name = {}
        for key, _ in own:
            found = next((n for n in timm_names(key[len(TRUNK):]) if n in keys), None)
            if found is not None:
                by_name[found] = key
        if len(by_name) >= 0.5 * len(own):
            adaptation.rename_keys(lambda k: by_name.get(k, k),
                                   note=f"timm layout: {len(by_name)} tensors matched by name under '{TRUNK}'")
            return adaptation
        pairs = match_by_order(list(keys.items()), own)
        by_order = {ck: mk for mk, ck, _ in pairs}
        tail = [k for k in keys if k not in by_order]
        adaptation.rename_keys(lambda k: by_order.get(k, k))
        adaptation.note(f"foreign layout: {len(pairs)} tensors matched by order and shape ({pairs[0][1]} -> "
                        f"{pairs[0][0]}, ..., {pairs[-1][1]} -> {pairs[-1][0]}); verify with a prediction")
        if tail:
            adaptation.note(f'{len(tail)} checkpoint tensors left unmatched (first: {tail[0]}; the classifier and '
                            'layers past the last returned level) are dropped')
        return adaptation


# ---- checkpoint layouts -------------------------------------------------------------------------------------
TRUNK = 'trunk.'


def timm_names(trunk_key: str) -> List[str]:
    """Names a trunk parameter may have in a timm classification model's state dict."""
    names = [trunk_key, re.sub(r'^([^.]+?)_(\d+)\.', r'\1.\2.', trunk_key)]
    if trunk_key.startswith('model.'):
        names.append(trunk_key[len('model.'):])
    return names


def match_by_order(ckpt: List[Tuple[str, torch.Tensor]], own: List[Tuple[str, torch.Size]]):
    """Pair ``own`` (trunk keys, shapes) with the first ``len(own)`` checkpoint tensors, shapes equal.
    BatchNorm's ``num_batches_tracked`` counters are left out when only one side has them."""
    first_error = None
    for skip_counters in (False, True):
        a = [(k, v) for k, v in ckpt if not (skip_counters and k.endswith('num_batches_tracked'))]
        b = [(k, s) for k, s in own if not (skip_counters and k.endswith('num_batches_tracked'))]
        bad = next((i for i, ((_, v), (_, s)) in enumerate(zip(a, b)) if tuple(v.shape) != tuple(s)), None)
        if bad is None and len(a) >= len(b):
            return [(mk, ck, v) for (mk, _), (ck, v) in zip(b, a)]
        if first_error is None:
            if bad is None:
                first_error = (f'the checkpoint has {len(a)} tensors, fewer than the {len(b)} the backbone needs')
            else:
                first_error = (f'tensor #{bad} differs: backbone {b[bad][0]} {tuple(b[bad][1])} vs checkpoint '
                               f'{a[bad][0]} {tuple(a[bad][1].shape)}')
    raise CheckpointError(f'the checkpoint matches the timm trunk neither by name nor by order and shape '
                          f'({first_error}); is it a checkpoint of this model_name?')
