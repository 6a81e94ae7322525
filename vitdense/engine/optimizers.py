"""Layer-wise / stage-wise learning-rate decay for any vitdense backbone."""
from typing import List

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from vitdense.errors import ConfigError
from vitdense.registry import OPTIM_WRAPPER_CONSTRUCTORS

NO_DECAY_KEYS = ('pos_embed', 'cls_token', 'reg_token', 'relative_position_bias_table', 'absolute_pos_embed',
                 'pos_layer_embed')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Per-parameter lr = base_lr * decay_rate ** (num_depths - 1 - depth), depth asked from the backbone.

    ``paramwise_cfg``:
        decay_rate (float): 0.95 (ConvNeXt detection, ViT-Adapter), 0.9 (ConvNeXt segmentation), 0.7 (ViTDet).
        decay_type (str): 'layer_wise' or 'stage_wise' (passed to ``backbone.get_layer_depth``).
        no_decay_keys (tuple): name fragments that get no weight decay, besides every 1-D parameter (norms,
            biases, layer scales). Default: position embeddings, class tokens, relative-position tables.

    Parameters outside the backbone (neck, heads) sit at the last depth: full lr. No class-name matching:
    a backbone takes part by implementing ``get_layer_depth(name, mode) -> (depth, num_depths)``.
    """

    def add_params(self, params: List[dict], module: nn.Module, **kwargs) -> None:
        cfg = dict(self.paramwise_cfg)
        decay_rate = cfg.get('decay_rate', 1.0)
        mode = cfg.get('decay_type', 'layer_wise')
        no_decay_keys = tuple(cfg.get('no_decay_keys', NO_DECAY_KEYS))
        backbone = getattr(module, 'backbone', module)
        if not hasattr(backbone, 'get_layer_depth'):
            raise ConfigError(f'{type(backbone).__name__} has no get_layer_depth(); layer decay needs a vitdense '
                              'backbone (or one that implements get_layer_depth(name, mode))')
        prefix = 'backbone.' if backbone is not module else ''
        _, num_depths = backbone.get_layer_depth('', mode)
        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            if prefix and not name.startswith(prefix):
                depth = num_depths - 1
            else:
                depth, _ = backbone.get_layer_depth(name[len(prefix):], mode)
            lr_scale = decay_rate ** (num_depths - 1 - depth)
            no_decay = param.ndim == 1 or name.endswith('.bias') or any(k in name for k in no_decay_keys)
            weight_decay = 0.0 if no_decay else self.base_wd
            key = (depth, no_decay)
            if key not in groups:
                groups[key] = dict(params=[], lr=self.base_lr * lr_scale, weight_decay=weight_decay,
                                   lr_scale=lr_scale, layer_depth=depth, param_names=[])
            groups[key]['params'].append(param)
            groups[key]['param_names'].append(name)
        params.extend(groups[k] for k in sorted(groups))
        print_log(f'layer decay ({mode}, rate {decay_rate}): {len(groups)} parameter groups over '
                  f'{num_depths} depths', logger='current')


def merge_param_groups(groups: List[dict]) -> List[dict]:
    """Parameter groups with identical settings (every key but ``params`` / ``param_names``) joined into one,
    in order of first appearance; each parameter keeps exactly the settings it had."""
    merged = {}
    for group in groups:
        settings = {k: v for k, v in group.items() if k not in ('params', 'param_names')}
        key = repr(sorted(settings.items()))
        if key not in merged:
            merged[key] = dict(settings, params=[])
            if 'param_names' in group:
                merged[key]['param_names'] = []
        merged[key]['params'].extend(group['params'])
        if 'param_names' in group and 'param_names' in merged[key]:
            merged[key]['param_names'].extend(group['param_names'])
    return list(merged.values())


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MergedGroupsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's ``DefaultOptimWrapperConstructor`` (same ``paramwise_cfg``) with its groups merged.

    The default constructor gives every parameter its own group once ``paramwise_cfg`` is set (the Swin recipe's
    ``custom_keys`` for norms and position tables: ~340 groups of one tensor for Mask R-CNN Swin-T). Optimisers
    step group by group, so a multi-tensor (``foreach``) or ``fused`` AdamW then works on one tensor at a time.
    Merging the groups whose hyper-parameters are all equal (lr, weight decay, ... as the default constructor set
    them) leaves each parameter's update unchanged and gives those implementations whole lists to work on
    (Swin-T Mask R-CNN: 2 groups, decay and no decay).
    """

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs) -> None:
        if prefix:  # the default constructor's recursion into submodules
            return super().add_params(params, module, prefix=prefix, **kwargs)
        groups: List[dict] = []
        super().add_params(groups, module, prefix=prefix, **kwargs)
        merged = merge_param_groups(groups)
        params.extend(merged)
        print_log(f'{len(groups)} parameter groups merged into {len(merged)} by identical hyper-parameters',
                  logger='current')
