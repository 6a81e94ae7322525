"""A backbone family added the way the README's "Adding a backbone family" says: a DenseBackbone subclass with its
own adapt_checkpoint (its module), a config inheriting a vitdense base (its config base) and this test (its test),
run through the contract checks and through tools/convert_checkpoint.py."""
import importlib.util
import os

import pytest
import torch
import torch.nn as nn
import torch.utils.checkpoint as cp

from tests.conftest import REPO
from tests.models.backbones.contract import BackboneContract
from vitdense.checkpoint import load_pretrained
from vitdense.models.backbones import DenseBackbone
from vitdense.registry import MODELS


class ToyFamily(DenseBackbone):
    """A stride-4 conv stem and four conv stages (strides 4 / 8 / 16 / 32, ceil sizes), LayerNorm-free.

    Its "official" checkpoints name the stem ``conv0``, the stages ``features.i`` and carry a classifier
    ``fc``; vitdense names them ``stem`` / ``stages.i`` and has no classifier."""

    def __init__(self, width: int = 8, out_indices=(0, 1, 2, 3), frozen_stages: int = -1, with_cp: bool = False,
                 init_cfg=None):
        super().__init__(out_indices, frozen_stages, 3, init_cfg)
        self.depths = (1, 1, 1, 1)
        self.with_cp = with_cp
        dims = [width * 2 ** i for i in range(4)]
        self.num_features = dims
        self.stem = nn.Conv2d(3, width, 3, stride=4, padding=1)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dims[max(i - 1, 0)], dims[i], 3, stride=1 if i == 0 else 2, padding=1), nn.GELU())
            for i in range(4))
        self.out_norms = self.build_out_norms(lambda c: nn.GroupNorm(1, c), dims)
        self._freeze()

    def forward(self, x):
        self.check_input(x)
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = cp.checkpoint(stage, x, use_reentrant=False) if self.with_cp and self.training else stage(x)
            if i in self.out_indices:
                outs.append(self.out_norms[i](x))
        return tuple(outs)

    def frozen_modules(self):
        return self.stem_and_stages(self.stem, self.stages)

    def param_depth(self, param_name, mode):
        return self.stage_layer_depth(param_name, mode, 'stem', 'stages')

    def adapt_checkpoint(self, state_dict):
        adaptation = super().adapt_checkpoint(state_dict)
        adaptation.rename([(r'^conv0\.', 'stem.'), (r'^features\.', 'stages.')], note='official toy layout remapped')
        adaptation.drop_prefix('fc.', 'classifier head')
        return adaptation


class TestToyFamilyContract(BackboneContract):
    def build(self, **overrides):
        return ToyFamily(**overrides)


@pytest.fixture
def registered_toy_family():
    """What ``@MODELS.register_module()`` does when vitdense.models imports a family module; undone afterwards so
    the rest of the suite sees vitdense's own registry."""
    MODELS.register_module(module=ToyFamily)
    yield
    MODELS._module_dict.pop('ToyFamily')


def convert_tool():
    spec = importlib.util.spec_from_file_location('convert_checkpoint',
                                                  os.path.join(REPO, 'tools', 'convert_checkpoint.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_official_toy_checkpoint_converts_for_a_config_of_the_family(tmp_path, capsys, registered_toy_family):
    config = tmp_path / 'mask-rcnn_toy_fpn_mini-coco.py'
    config.write_text("_base_ = 'vitdense::_base_/models/mask-rcnn_fpn.py'\n"
                      "model = dict(backbone=dict(type='vitdense.ToyFamily', width=8),\n"
                      "             neck=dict(in_channels=[8, 16, 32, 64]))\n")
    official = {f'conv0.{k}': v + 1 for k, v in ToyFamily().stem.state_dict().items()}
    official.update({f'features.{k}': v - 1 for k, v in ToyFamily().stages.state_dict().items()})
    official.update({'fc.weight': torch.randn(10, 64), 'fc.bias': torch.randn(10)})
    torch.save({'model': official}, tmp_path / 'toy_official.pth')
    dst = tmp_path / 'toy_backbone.pth'

    rc = convert_tool().main([str(tmp_path / 'toy_official.pth'), str(dst), '--config', str(config)])
    out = capsys.readouterr().out
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0] == f'ToyFamily from {config}: mapped 10 of its 18 tensors from {tmp_path / "toy_official.pth"}'
    assert 'note: official toy layout remapped' in lines
    assert 'renamed (backbone <- SRC) (10): stem.weight <- conv0.weight, stem.bias <- conv0.bias, ' \
           'stages.0.0.weight <- features.0.0.weight, stages.0.0.bias <- features.0.0.bias (+6 more; ' \
           '--verbose lists all)' in lines
    assert 'dropped (in SRC, no place in the backbone) (2): fc.weight, fc.bias' in lines
    assert '  why: classifier head (2)' in lines
    assert not any(line.startswith('resized') for line in lines)
    assert 'missing (left at their initialisation) (8): out_norms.0.weight, out_norms.0.bias, ' \
           'out_norms.1.weight, out_norms.1.bias, out_norms.2.weight, out_norms.2.bias, out_norms.3.weight, ' \
           'out_norms.3.bias' in lines

    saved = torch.load(dst, weights_only=True)
    assert saved['meta']['backbone'] == 'ToyFamily'
    assert sorted(saved['state_dict']) == sorted(k.replace('conv0.', 'stem.').replace('features.', 'stages.')
                                                 for k in official if not k.startswith('fc.'))
    model = MODELS.build(dict(type='ToyFamily', init_cfg=dict(type='Pretrained', checkpoint=str(dst))))
    model.init_weights()
    assert torch.equal(model.stem.weight, official['conv0.weight'])
    assert torch.equal(model.stages[3][0].bias, official['features.3.0.bias'])
    report = load_pretrained(ToyFamily(), str(dst), logger='silent')
    assert report.adaptation.renamed == {} and report.adaptation.dropped == {} and report.dropped == []
