"""CheckpointAdaptation and the adapt_checkpoint method load_pretrained resolves through inheritance."""
import torch
import torch.nn as nn

from vitdense.checkpoint import CheckpointAdaptation, load_pretrained
from vitdense.models.backbones import DenseBackbone


def test_renames_chain_back_to_the_checkpoint_name_and_drops_say_why():
    a = CheckpointAdaptation.of({'stage1.w': torch.ones(2), 'stage1.b': torch.zeros(2), 'fc.w': torch.ones(3),
                                 'idx': torch.arange(3)})
    assert a.rename([(r'^stage1\.', 'stages.0.')], note='official layout') == 2
    assert a.rename([(r'^stages\.0\.w$', 'stages.0.weight')]) == 1
    assert a.renamed == {'stages.0.weight': 'stage1.w', 'stages.0.b': 'stage1.b'}
    assert a.notes == ['official layout']
    assert a.drop_prefix('fc.', 'classifier head') == ['fc.w']
    assert a.drop_suffix('idx', 'buffer the backbone rebuilds') == ['idx']
    assert a.drop(['stages.0.b'], 'unused') == ['stages.0.b']
    # dropped keys are the checkpoint's names, a renamed key's origin included; its rename is forgotten
    assert a.dropped == {'fc.w': 'classifier head', 'idx': 'buffer the backbone rebuilds', 'stage1.b': 'unused'}
    assert a.renamed == {'stages.0.weight': 'stage1.w'}
    assert list(a.state_dict) == ['stages.0.weight']
    a.resize('stages.0.weight', torch.ones(5))
    a.resize('stages.0.weight', torch.ones(7))
    assert a.resized == {'stages.0.weight': ((2,), (7,))}
    assert a.dropped_by_reason() == {'classifier head': ['fc.w'], 'buffer the backbone rebuilds': ['idx'],
                                     'unused': ['stage1.b']}


def test_apply_reads_renames_of_a_foreign_filter_from_the_tensors():
    sd = {'blocks.0.w': torch.randn(4, 1), 'blocks.0.gamma': torch.randn(4), 'prompt.w': torch.randn(2)}

    def timm_like_filter(state_dict):  # renames, reshapes one tensor (a view), drops another
        return {'stages.0.w': state_dict['blocks.0.w'], 'stages.0.scale': state_dict['blocks.0.gamma'].reshape(4, 1)}

    a = CheckpointAdaptation.of(sd)
    a.rename([(r'^blocks\.0\.w$', 'blocks.0.w')])  # nothing moves
    a.apply(timm_like_filter, note='official layout remapped', dropped_why='prompt encoder')
    assert a.renamed == {'stages.0.w': 'blocks.0.w', 'stages.0.scale': 'blocks.0.gamma'}
    assert a.dropped == {'prompt.w': 'prompt encoder'}
    assert a.notes == ['official layout remapped']
    assert torch.equal(a.state_dict['stages.0.scale'].flatten(), sd['blocks.0.gamma'])


class ToyBackbone(DenseBackbone):
    """Two convs; reads an 'official' layout that names them conv_a / conv_b and carries a classifier."""

    def __init__(self):
        super().__init__(out_indices=(0,))
        self.stem = nn.Conv2d(3, 4, 3)
        self.head_free = nn.Conv2d(4, 4, 1)

    def adapt_checkpoint(self, state_dict):
        a = super().adapt_checkpoint(state_dict)
        a.rename([(r'^conv_a\.', 'stem.'), (r'^conv_b\.', 'head_free.')], note='official toy layout remapped')
        a.drop_prefix('classifier.', 'classifier head')
        return a


class ToyBackboneWithBuffers(ToyBackbone):
    def adapt_checkpoint(self, state_dict):
        a = super().adapt_checkpoint(state_dict)  # the parent's renames, then this class's own step
        a.drop_suffix('.index', 'buffer the backbone rebuilds')
        return a


def test_load_pretrained_uses_the_method_of_the_class_and_its_parents(tmp_path, capsys):
    source = ToyBackbone()
    sd = {'conv_a.weight': source.stem.weight + 1, 'conv_a.bias': source.stem.bias,
          'conv_b.weight': source.head_free.weight, 'classifier.weight': torch.zeros(10, 4),
          'stem.index': torch.arange(4)}
    torch.save({'model': sd}, tmp_path / 'toy.pth')
    model = ToyBackboneWithBuffers()
    report = load_pretrained(model, str(tmp_path / 'toy.pth'))
    assert torch.equal(model.stem.weight, source.stem.weight + 1)
    a = report.adaptation
    assert a.renamed == {'stem.weight': 'conv_a.weight', 'stem.bias': 'conv_a.bias',
                         'head_free.weight': 'conv_b.weight'}
    assert a.dropped == {'classifier.weight': 'classifier head', 'stem.index': 'buffer the backbone rebuilds'}
    assert report.loaded == ['stem.weight', 'stem.bias', 'head_free.weight']
    assert report.dropped == [] and report.missing == ['head_free.bias']
    assert report.notes == ['official toy layout remapped']
    summary = report.summary()
    assert 'renamed 3 tensors (model <- checkpoint): stem.weight <- conv_a.weight' in summary
    assert 'dropped 1 checkpoint tensors on purpose (classifier head): classifier.weight' in summary
    assert 'dropped 1 checkpoint tensors on purpose (buffer the backbone rebuilds): stem.index' in summary
    assert 'missing 1 backbone tensors (left at their init): head_free.bias' in summary
    # the default keeps names: the parent class alone does not know the subclass's buffer
    plain = load_pretrained(ToyBackbone(), str(tmp_path / 'toy.pth'), logger='silent')
    assert plain.dropped == ['stem.index'] and 'stem.index' not in plain.adaptation.dropped
