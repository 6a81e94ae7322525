"""MergedGroupsOptimWrapperConstructor: the default constructor's groups merged, every update unchanged."""
import copy

import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import vitdense.engine  # noqa: F401
from vitdense.engine.optimizers import merge_param_groups


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        # no bias before the norm: its gradient is rounding noise, which Adam scales up to full steps
        self.conv = nn.Conv2d(3, 8, 3, bias=False)
        self.norm = nn.BatchNorm2d(8)
        self.relative_position_bias_table = nn.Parameter(torch.randn(5))
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.norm(self.conv(x)).mean((2, 3)) + self.relative_position_bias_table[:1]
        return self.head(x)


OPTIM = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
             paramwise_cfg=dict(custom_keys={'relative_position_bias_table': dict(decay_mult=0.),
                                             'norm': dict(decay_mult=0.), 'head': dict(lr_mult=0.1)}))


def build(model, constructor=None, **optimizer):
    init_default_scope('mmdet')
    cfg = copy.deepcopy(OPTIM)
    cfg['optimizer'].update(optimizer)
    if constructor:
        cfg['constructor'] = constructor
    return build_optim_wrapper(model, cfg)


def settings_by_param(optim_wrapper):
    out = {}
    for group in optim_wrapper.optimizer.param_groups:
        for p in group['params']:
            out[id(p)] = {k: v for k, v in group.items() if k != 'params'}
    return out


def test_groups_merged_by_identical_settings_and_each_parameter_keeps_its_own():
    model = Net()
    default = build(model)
    merged = build(model, 'vitdense.MergedGroupsOptimWrapperConstructor')
    assert len(default.optimizer.param_groups) == 6  # one per parameter
    # decay (conv), no decay (norm, table), head at 0.1 lr: three settings
    assert len(merged.optimizer.param_groups) == 3
    assert settings_by_param(merged) == settings_by_param(default)
    # the module's own table first, then conv, norm, head (mmengine's order); groups in first-appearance order
    assert [len(g['params']) for g in merged.optimizer.param_groups] == [3, 1, 2]


def test_training_steps_equal_the_unmerged_optimizer_bitwise():
    torch.manual_seed(0)
    base = Net()
    runs = {}
    merged = 'vitdense.MergedGroupsOptimWrapperConstructor'
    for label, constructor, extra in [('default', None, {}), ('merged', merged, {}),
                                      ('merged foreach', merged, dict(foreach=True)),
                                      ('merged fused', merged, dict(fused=True))]:
        model = copy.deepcopy(base)
        wrapper = build(model, constructor, **extra)
        gen = torch.Generator().manual_seed(1)
        for _ in range(4):
            loss = model(torch.randn(2, 3, 9, 9, generator=gen)).square().mean()
            wrapper.update_params(loss)
        runs[label] = [p.detach().clone() for p in model.parameters()]
    start = list(base.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(runs['default'], start))  # the steps moved the weights
    for label in ('merged', 'merged foreach'):
        for a, b in zip(runs[label], runs['default']):
            assert torch.equal(a, b), label
    # the fused kernel (the main job's) rounds differently: the same update to float precision
    for a, b in zip(runs['merged fused'], runs['default']):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_merge_keeps_first_appearance_order_and_names():
    a, b, c = (nn.Parameter(torch.zeros(1)) for _ in range(3))
    groups = [dict(params=[a], lr=1.0, param_names=['a']), dict(params=[b], lr=2.0, param_names=['b']),
              dict(params=[c], lr=1.0, param_names=['c'])]
    merged = merge_param_groups(groups)
    assert [(g['lr'], g['param_names']) for g in merged] == [(1.0, ['a', 'c']), (2.0, ['b'])]
    assert merged[0]['params'] == [a, c]
