"""Layer-wise / stage-wise learning-rate decay for any vitdense backbone."""
from typing import List

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from vitdense.errors import ConfigError
from vitdense.registry import OPTIM_WRAPPER_CONSTRUCTORS

NO_DECAY_KEYS = ('pos_embed', 'cls_token', 'relative_position_bias_table', 'absolute_pos_embed', 'pos_layer_embed')


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
