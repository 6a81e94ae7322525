import pytest
import timm
import torch
import torch.nn.functional as F

from tests.conftest import ODD_SIZES, config_backbone, expected_shapes, randomize, rel_err, saved_random_timm
from vitdense.models.backbones import ConvNeXt


@pytest.mark.parametrize('hw', ODD_SIZES)
def test_pyramid_shapes_any_size(hw):
    model = ConvNeXt(drop_path_rate=0.0).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *hw))
    assert [tuple(o.shape[1:]) for o in outs] == expected_shapes(*hw, [96, 192, 384, 768])


def test_parity_with_timm_same_weights():
    ref = timm.create_model('convnext_tiny', num_classes=0).eval()
    sd = randomize(ref.state_dict())
    ref.load_state_dict(sd)
    ours = ConvNeXt(drop_path_rate=0.0).eval()
    result = ours.load_state_dict(sd, strict=False)
    assert set(result.unexpected_keys) == {'head.norm.weight', 'head.norm.bias'}
    x = torch.randn(2, 3, 256, 320)
    with torch.no_grad():
        ref_maps = ref.forward_intermediates(x, intermediates_only=True)
        for a, b in zip(ours(x), ref_maps):
            b = F.layer_norm(b.permute(0, 2, 3, 1), b.shape[1:2], eps=1e-6).permute(0, 3, 1, 2)
            assert rel_err(a, b) <= 1e-5


def test_official_layout_loads_through_converter(tmp_path):
    from vitdense.checkpoint import load_pretrained
    ref = timm.create_model('convnext_tiny', num_classes=10).eval()
    sd = randomize(ref.state_dict(), seed=2)
    ref.load_state_dict(sd)
    # facebookresearch/ConvNeXt names
    official = {}
    for k, v in sd.items():
        k = k.replace('stem.', 'downsample_layers.0.').replace('conv_dw', 'dwconv').replace('mlp.fc', 'pwconv')
        for i in (1, 2, 3):
            k = k.replace(f'stages.{i}.downsample.', f'downsample_layers.{i}.')
        k = k.replace('.blocks.', '.').replace('head.norm.', 'norm.').replace('head.fc.', 'head.')
        official[k] = v
    path = tmp_path / 'convnext_tiny_1k_224.pth'
    torch.save({'model': official}, path)
    ours = ConvNeXt(drop_path_rate=0.0).eval()
    report = load_pretrained(ours, str(path))
    assert len(report.loaded) == len(ours.state_dict()) - 8  # all but the 4 fresh output norms
    assert any('official' in n for n in report.notes)
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        b = ref.forward_intermediates(x, intermediates_only=True)[-1]
        a = ours(x)[-1]
        b = F.layer_norm(b.permute(0, 2, 3, 1), b.shape[1:2], eps=1e-6).permute(0, 3, 1, 2)
    assert rel_err(a, b) <= 1e-5


def test_frozen_stages_and_layer_depth():
    model = ConvNeXt(frozen_stages=2, drop_path_rate=0.0)
    model.train()
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert not any(p.requires_grad for p in model.stages[1].parameters())
    assert all(p.requires_grad for p in model.stages[2].parameters())
    x = torch.randn(1, 3, 64, 64)
    sum(o.mean() for o in model(x)).backward()
    assert model.stages[2].blocks[0].conv_dw.weight.grad is not None
    # published ConvNeXt-T grouping: stage 2 in threes, stage 3 last backbone depth 6, heads 7
    assert model.get_layer_depth('stem.0.weight') == (0, 8)
    assert model.get_layer_depth('stages.1.downsample.1.weight') == (2, 8)
    assert model.get_layer_depth('stages.2.blocks.8.mlp.fc1.weight') == (5, 8)
    assert model.get_layer_depth('stages.3.blocks.0.gamma') == (6, 8)
    assert model.get_layer_depth('out_norms.0.weight') == (7, 8)
    assert model.get_layer_depth('stages.3.downsample.1.weight', 'stage_wise') == (0, 6)
    assert model.get_layer_depth('stages.3.blocks.2.gamma', 'stage_wise') == (4, 6)
    assert ConvNeXt(arch='small').get_layer_depth('stages.3.blocks.0.gamma') == (12, 14)


def test_arch_by_name_or_dict_and_unknown_names_in_one_line():
    custom = ConvNeXt(arch=dict(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64)), drop_path_rate=0.0)
    assert custom.num_features == [8, 16, 32, 64] and custom.depths == (1, 1, 1, 1)
    with pytest.raises(ValueError) as info:
        ConvNeXt(arch='huge')
    assert str(info.value) == ("unknown ConvNeXt arch 'huge'; choose one of ['base', 'large', 'small', 'tiny', "
                               "'xlarge'] or pass a dict(depths=, dims=)")


def test_in1k_config_backbone_through_init_cfg_equals_timm_at_224(tmp_path):
    """The classifier config's backbone, a random timm convnext_tiny file loaded through its init_cfg: timm's
    stage maps at 224, and its output is the last one through vitdense's fresh output norm."""
    ref = saved_random_timm('convnext_tiny', tmp_path / 'convnext_tiny.pth', seed=2)
    ours = config_backbone('convnext/convnext-t_in1k.py', tmp_path / 'convnext_tiny.pth')
    assert ours.out_indices == (3,)
    stage_maps = []
    for stage in ours.stages:  # each stage's map, before the output norm
        stage.blocks.register_forward_hook(lambda module, args, out: stage_maps.append(out))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = ref.forward_intermediates(x, intermediates_only=True)
        (last,) = ours(x)
    want = F.layer_norm(expected[3].permute(0, 2, 3, 1), (768,), eps=1e-6).permute(0, 3, 1, 2)
    assert last.shape == want.shape == (1, 768, 7, 7) and rel_err(last, want) <= 1e-5
    for a, b in zip(stage_maps, expected):
        assert a.shape == b.shape and rel_err(a, b) <= 1e-5
