import os

import pytest
import timm
import torch
import torch.nn.functional as F

from tests.conftest import ODD_SIZES, REPO, config_backbone, expected_shapes, randomize, rel_err, saved_random_timm
from vitdense.models.backbones import SwinTransformer

SMALL = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))  # Swin's layout, a fraction of the CPU


def timm_stage_outputs(model, x):
    """timm Swin stage maps, passed through an affine-free LayerNorm (vitdense's fresh output norms)."""
    outs, y = [], model.patch_embed(x)
    for layer in model.layers:
        y = layer(y)
        outs.append(F.layer_norm(y, y.shape[-1:]).permute(0, 3, 1, 2))
    return outs


@pytest.mark.parametrize('hw', ODD_SIZES)
def test_pyramid_shapes_any_size(hw):
    model = SwinTransformer(drop_path_rate=0.0).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *hw))
    assert [tuple(o.shape[1:]) for o in outs] == expected_shapes(*hw, [96, 192, 384, 768])
    assert all(torch.isfinite(o).all() for o in outs)


def test_content_beyond_the_image_does_not_reach_the_first_window():
    """Internal padding and the shift mask keep attention local: appending 4 pixels of zeros to the
    bottom/right changes the map size (14 -> 15 tokens) but not the features of the top-left window."""
    model = SwinTransformer(drop_path_rate=0.0, out_indices=(0,)).eval()
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        a = model(x)[0]
        b = model(F.pad(x, (0, 4, 0, 4)))[0]
    assert a.shape[-2:] == (14, 14) and b.shape[-2:] == (15, 15)
    assert rel_err(b[..., :4, :4], a[..., :4, :4]) < 1e-5
    assert rel_err(b[..., :14, :14], a) > 1e-3  # while the border does change


def test_parity_with_timm_same_weights():
    ref = timm.create_model('swin_tiny_patch4_window7_224', img_size=448, num_classes=0).eval()
    sd = randomize(ref.state_dict())
    ref.load_state_dict(sd)
    ours = SwinTransformer(drop_path_rate=0.0).eval()
    result = ours.load_state_dict(sd, strict=False)
    assert set(result.unexpected_keys) == {'norm.weight', 'norm.bias'}
    assert all(k.startswith('out_norms.') for k in result.missing_keys)
    x = torch.randn(1, 3, 448, 448)
    with torch.no_grad():
        for a, b in zip(ours(x), timm_stage_outputs(ref, x)):
            assert a.shape == b.shape
            assert rel_err(a, b) <= 1e-5


@pytest.mark.parametrize('hw', [(224, 224), (100, 164)])
def test_parity_with_mmdet_after_its_converter(hw):
    mmdet_swin = pytest.importorskip('mmdet.models.backbones.swin')
    from mmdet.models.backbones.swin import swin_converter

    timm_model = timm.create_model('swin_tiny_patch4_window7_224', num_classes=0)
    sd = randomize(timm_model.state_dict(), seed=1)
    # the official release layout: patch merging at the end of stage i, classifier 'head.'
    official = {}
    for k, v in sd.items():
        for i in (1, 2, 3):
            k = k.replace(f'layers.{i}.downsample', f'layers.{i - 1}.downsample')
        official[k.replace('head.fc.', 'head.')] = v
    ref = mmdet_swin.SwinTransformer(embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                                     window_size=7, drop_path_rate=0.0, convert_weights=False)
    ref.eval()  # mmdet's train() override returns None, so no chaining
    converted = {k[len('backbone.'):]: v for k, v in swin_converter(official).items()}  # it adds a prefix
    assert ref.load_state_dict(converted, strict=False).unexpected_keys == ['norm.weight', 'norm.bias']
    ours = SwinTransformer(drop_path_rate=0.0).eval()
    ours.load_state_dict(ours.adapt_checkpoint(official).state_dict, strict=False)
    # mmdet's out norms are fresh LayerNorms too: make them equal
    for i in range(4):
        getattr(ref, f'norm{i}').load_state_dict(ours.out_norms[i].state_dict())
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        for a, b in zip(ours(x), ref(x)):
            assert a.shape == b.shape
            assert rel_err(a, b) <= 1e-5

    # and the reverse: a state dict in mmdet's layout (e.g. from an mmdet Swin detector) loads into ours
    ours2 = SwinTransformer(drop_path_rate=0.0).eval()
    ours2.load_state_dict(ours2.adapt_checkpoint(ref.state_dict()).state_dict, strict=True)
    with torch.no_grad():
        for a, b in zip(ours2(x), ref(x)):
            assert rel_err(a, b) <= 1e-5


def test_frozen_stages_and_train_mode():
    model = SwinTransformer(frozen_stages=1, drop_path_rate=0.0)
    model.train()
    frozen = list(model.patch_embed.parameters()) + list(model.layers[0].parameters())
    assert all(not p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in model.layers[1].parameters())
    assert not model.layers[0].training and model.layers[1].training
    sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    assert all(p.grad is None for p in frozen)
    assert model.layers[1].blocks[0].attn.qkv.weight.grad is not None


def test_drop_path_linear_over_blocks():
    model = SwinTransformer(arch='tiny', drop_path_rate=0.3)
    rates = [b.drop_path1.drop_prob if hasattr(b.drop_path1, 'drop_prob') else 0.0
             for layer in model.layers for b in layer.blocks]
    assert len(rates) == 12 and rates[0] == 0.0 and abs(rates[-1] - 0.3) < 1e-6
    assert all(b > a for a, b in zip(rates, rates[1:]))


def test_layer_depth():
    model = SwinTransformer(arch='tiny')
    assert model.get_layer_depth('patch_embed.proj.weight') == (0, 14)
    assert model.get_layer_depth('layers.0.blocks.0.attn.qkv.weight') == (1, 14)
    assert model.get_layer_depth('layers.2.downsample.reduction.weight') == (5, 14)
    assert model.get_layer_depth('layers.3.blocks.1.mlp.fc2.bias') == (12, 14)
    assert model.get_layer_depth('out_norms.3.weight') == (13, 14)
    assert model.get_layer_depth('layers.2.blocks.4.norm1.weight', 'stage_wise') == (3, 6)


def test_input_too_small_is_one_clear_line():
    with pytest.raises(ValueError, match=r'smaller than its total stride 32; resize or pad'):
        SwinTransformer()(torch.randn(1, 3, 24, 64))
    with pytest.raises(ValueError, match=r'expects an N x 3 x H x W tensor'):
        SwinTransformer()(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match=r"unknown SwinTransformer arch 'huge'"):
        SwinTransformer(arch='huge')


# ---- classification windows (always_shift=False) vs timm; the configs that choose each --------------------------
@pytest.fixture(scope='module')
def timm_swin_t_file(tmp_path_factory):
    """(timm Swin-T at 224 with random weights, the path of its state dict saved as timm writes it)."""
    path = tmp_path_factory.mktemp('swin') / 'swin_tiny_patch4_window7_224.pth'
    return saved_random_timm('swin_tiny_patch4_window7_224', path, seed=3), path


def test_in1k_config_backbone_equals_timm_forward_intermediates_at_224(timm_swin_t_file):
    ref, path = timm_swin_t_file
    ours = config_backbone('swin/swin-t-p4-w7_in1k.py', path)
    assert ours.always_shift is False and ours.out_indices == (3,)
    stage_maps = []
    for stage in ours.layers:
        stage.register_forward_hook(lambda module, args, out: stage_maps.append(out.permute(0, 3, 1, 2)))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = ref.forward_intermediates(x, intermediates_only=True)
        (last,) = ours(x)
    assert last.shape == expected[3].shape == (1, 768, 7, 7)
    assert rel_err(last, F.layer_norm(expected[3].permute(0, 2, 3, 1), (768,)).permute(0, 3, 1, 2)) <= 1e-5
    for a, b in zip(stage_maps, expected):  # every stage, before the output norm
        assert a.shape == b.shape and rel_err(a, b) <= 1e-5


def test_classification_configs_use_classification_windows_and_dense_configs_do_not():
    from mmengine.config import Config
    for name, always_shift in [('swin-t-p4-w7_mini-coco-crops.py', False),
                               ('mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py', True),
                               ('upernet_swin-t-p4-w7_mini-ade20k.py', True)]:
        backbone = Config.fromfile(os.path.join(REPO, 'configs', 'swin', name)).model.backbone
        assert backbone.get('always_shift', True) is always_shift, name


def test_detection_config_backbone_equals_mmdet_at_224(timm_swin_t_file):
    """The same timm file through the detection config's init_cfg and through mmdet's converter into mmdet's
    SwinTransformer: the always-shift windows of the detection recipe."""
    mmdet_swin = pytest.importorskip('mmdet.models.backbones.swin')
    _, path = timm_swin_t_file
    ours = config_backbone('swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', path, drop_path_rate=0.0)
    assert ours.always_shift is True
    sd = torch.load(path)
    official = {}  # mmdet's converter reads the official release layout: merging at the end of stage i
    for k, v in sd.items():
        for i in (1, 2, 3):
            k = k.replace(f'layers.{i}.downsample', f'layers.{i - 1}.downsample')
        official[k.replace('head.fc.', 'head.')] = v
    ref = mmdet_swin.SwinTransformer(embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                                     drop_path_rate=0.0, convert_weights=False)
    ref.load_state_dict({k[len('backbone.'):]: v for k, v in mmdet_swin.swin_converter(official).items()},
                        strict=False)
    ref.eval()
    for i in range(4):
        getattr(ref, f'norm{i}').load_state_dict(ours.out_norms[i].state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        for a, b in zip(ours(x), ref(x)):
            assert a.shape == b.shape
            assert rel_err(a, b) <= 1e-5


@pytest.mark.parametrize('hw,windows', [((96, 96), [(7, 7), (7, 7), (6, 6), (3, 3)]),
                                        ((224, 288), [(7, 7)] * 4)])
def test_classification_windows_are_timm_built_for_the_input_size(hw, windows):
    """Other sizes: timm built for 96 px shrinks the window to the 6x6 / 3x3 maps and drops the shift; at
    224 x 288 the 7x9 last stage shifts along W only; maps that are not a multiple of 7 (24, 72) are shifted,
    then padded. always_shift=False does the same, reading a shrunken window's relative-position biases from
    the 7x7 table (given here to timm as those entries, cropped)."""
    ref = timm.create_model('swin_tiny_patch4_window7_224', img_size=hw, num_classes=0, **SMALL).eval()
    assert [s.blocks[1].window_size for s in ref.layers] == windows
    ours = SwinTransformer(arch=SMALL, always_shift=False, drop_path_rate=0.0).eval()
    sd = {k: v for k, v in randomize(ours.state_dict(), seed=4).items() if not k.startswith('out_norms.')}
    ours.load_state_dict(sd, strict=False)  # fresh output norms: weight 1, bias 0
    theirs = {}
    for k, v in sd.items():
        if k.endswith('relative_position_bias_table'):
            wh, ww = ref.get_submodule(k[:-len('.relative_position_bias_table')]).window_size
            v = v.view(13, 13, -1)[7 - wh:6 + wh, 7 - ww:6 + ww].reshape(-1, v.shape[-1])
        theirs[k] = v
    assert set(ref.load_state_dict(theirs, strict=False).missing_keys) == {'norm.weight', 'norm.bias'}
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        for a, b in zip(ours(x), ref.forward_intermediates(x, intermediates_only=True)):
            assert a.shape == b.shape
            assert rel_err(a, F.layer_norm(b.permute(0, 2, 3, 1), b.shape[1:2]).permute(0, 3, 1, 2)) <= 1e-5


def test_classification_and_detection_windows_differ_only_where_a_map_fits_one_window():
    """At 224 only the 7x7 last stage differs (5 % relative with vitdense's own initialisation); at 448 x 672
    every map is larger than the window and a multiple of it, and the two semantics give the same features."""
    dense = SwinTransformer(arch=SMALL, drop_path_rate=0.0).eval()
    cls = SwinTransformer(arch=SMALL, always_shift=False, drop_path_rate=0.0).eval()
    cls.load_state_dict(dense.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        at_224 = [rel_err(a, b) for a, b in zip(cls(x), dense(x))]
    assert max(at_224[:3]) <= 1e-6 and at_224[3] > 1e-2
    x = torch.randn(1, 3, 448, 672)
    with torch.no_grad():
        assert all(rel_err(a, b) <= 1e-6 for a, b in zip(cls(x), dense(x)))


def test_always_shift_must_be_a_bool():
    with pytest.raises(ValueError, match=r'SwinTransformer: always_shift must be True .* or False .*got \'no\''):
        SwinTransformer(always_shift='no')


def test_a_subclass_puts_its_own_blocks_into_swins_pyramid():
    """build_block is the one way to change Swin's blocks: the subclass keeps Swin's constructor (stem,
    merging, drop path, init, freezing) and a config typo is an unknown keyword of the backbone itself."""
    from vitdense.models.backbones.swin import SwinBlock
    from vitdense.registry import MODELS
    calls = []

    class RecordedBlock(SwinBlock):
        pass

    class RecordingSwin(SwinTransformer):
        def build_block(self, stage, index, **block_args):
            calls.append((stage, index, block_args['shifted'], block_args['drop_path']))
            return RecordedBlock(**block_args, always_shift=self.always_shift)

    torch.manual_seed(0)
    swin = SwinTransformer(arch=SMALL, drop_path_rate=0.3, frozen_stages=1).eval()
    torch.manual_seed(0)
    recording = RecordingSwin(arch=SMALL, drop_path_rate=0.3, frozen_stages=1).eval()
    blocks = [b for layer in recording.layers for b in layer.blocks]
    assert len(blocks) == 8 and all(type(b) is RecordedBlock for b in blocks)
    rates = [b.drop_path1.drop_prob if hasattr(b.drop_path1, 'drop_prob') else 0.0
             for layer in swin.layers for b in layer.blocks]
    assert calls == [(i // 2, i % 2, i % 2 == 1, rate) for i, rate in enumerate(rates)]
    assert not recording.layers[0].blocks[1].attn.qkv.weight.requires_grad      # Swin's freezing
    assert recording.layers[1].blocks[0].attn.qkv.weight.requires_grad
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():  # same parameters from the same seed: the same network
        assert all(torch.equal(a, b) for a, b in zip(swin(x), recording(x)))
    with pytest.raises(TypeError, match=r"SwinTransformer.__init__\(\) got an unexpected keyword argument 'windw_size'"):
        MODELS.build(dict(type='SwinTransformer', arch=SMALL, windw_size=7))


@pytest.mark.parametrize('shifted', [False, True], ids=['regular', 'shifted'])
def test_cpu_window_attention_equals_the_sdpa_path(shifted):
    """On a CPU the window attention is two matmuls around a softmax (faster there); on a GPU SDPA. Both compute
    the same outputs and gradients (bias table and input), with the shift mask broadcast over the images."""
    from vitdense.models.backbones.swin import SwinBlock
    torch.manual_seed(0)
    block = SwinBlock(32, 2, window_size=7, shifted=shifted)
    torch.nn.init.normal_(block.attn.relative_position_bias_table, std=0.5)
    x = torch.randn(2, 21, 28, 32)
    mask = block.attention_mask(21, 28, x)
    results = []
    for sdpa in (False, True):
        block.attn.use_sdpa = lambda x, sdpa=sdpa: sdpa
        inputs = x.clone().requires_grad_()
        block(inputs, mask).square().sum().backward()
        results.append((block(inputs, mask).detach(), inputs.grad,
                        block.attn.relative_position_bias_table.grad.clone()))
        block.zero_grad()
    del block.attn.use_sdpa
    for ours, sdpa in zip(*results):
        assert rel_err(ours, sdpa) <= 1e-5
    assert results[0][2].abs().sum() > 0


def padded_window_attention(block, x, mask):
    """The window attention as mmdet / timm compute it: pad the normed map (zeros), shift, split into windows,
    project every window token (padding included), attend, project, merge, unshift, crop."""
    from vitdense.models.layers import pad_to_multiple, window_partition, window_reverse
    B, H, W, C = x.shape
    window, shift = block.window_and_shift(H, W)
    pad_first = block.always_shift
    if any(shift) and not pad_first:
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    x = pad_to_multiple(x, window, channels_last=True)
    Hp, Wp = x.shape[1:3]
    if any(shift) and pad_first:
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    x = block.attn(window_partition(x, window), mask if any(shift) else None, window)
    x = window_reverse(x, window, Hp, Wp)
    if any(shift) and pad_first:
        x = torch.roll(x, shifts=shift, dims=(1, 2))
    x = x[:, :H, :W]
    if any(shift) and not pad_first:
        x = torch.roll(x, shifts=shift, dims=(1, 2))
    return x


@pytest.mark.parametrize('always_shift', [True, False], ids=['mmdet', 'timm'])
@pytest.mark.parametrize('hw', [(14, 21), (9, 17), (5, 12)], ids=['multiple', 'padded', 'window-shrinks'])
@pytest.mark.parametrize('shifted', [False, True], ids=['regular', 'shifted'])
def test_window_attention_projects_only_the_maps_tokens(always_shift, hw, shifted):
    """qkv and proj run on the H x W tokens only and one gather each way replaces pad / roll / partition: the
    same outputs and gradients (input, qkv and proj weights and bias, bias table) as projecting the padded
    windows, in float64 to 1e-12, for both window semantics; a padding token's q, k, v is the qkv bias."""
    from vitdense.models.backbones.swin import SwinBlock
    torch.manual_seed(0)
    block = SwinBlock(16, 2, window_size=7, shifted=shifted, always_shift=always_shift).double()
    torch.nn.init.normal_(block.attn.relative_position_bias_table, std=0.5)
    torch.nn.init.normal_(block.attn.qkv.bias, std=0.5)
    x = torch.randn(2, *hw, 16, dtype=torch.float64)
    mask = block.attention_mask(*hw, x)
    results = []
    for attention in (block.window_attention, lambda x, mask: padded_window_attention(block, x, mask)):
        inputs = x.clone().requires_grad_()
        out = attention(inputs, mask)
        (out * torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out)).sum().backward()
        results.append([out.detach(), inputs.grad] + [p.grad.clone() for p in block.attn.parameters()])
        block.zero_grad()
    for ours, padded in zip(*results):
        assert ours.shape == padded.shape and rel_err(ours, padded) <= 1e-12


def test_window_layout_is_pad_roll_partition():
    """The gather indices reproduce padding, shifting and window partition of a map for both orders, and the
    way back is the inverse on the map's tokens."""
    from vitdense.models.backbones.swin import tokens_to_windows, window_layout, windows_to_tokens
    from vitdense.models.layers import pad_to_multiple, window_partition
    x = torch.arange(1, 9 * 17 + 1, dtype=torch.float64).view(1, 9, 17, 1)
    for pad_first in (True, False):
        layout = window_layout(9, 17, (7, 7), (3, 3), pad_first=pad_first)
        y = x if pad_first else torch.roll(x, shifts=(-3, -3), dims=(1, 2))
        y = pad_to_multiple(y, (7, 7), channels_last=True)
        if pad_first:
            y = torch.roll(y, shifts=(-3, -3), dims=(1, 2))
        expected = window_partition(y, (7, 7)).reshape(1, -1, 1)
        windows = tokens_to_windows(x, layout, None)
        assert layout.padded == (14, 21) and torch.equal(windows, expected)
        assert torch.equal(windows_to_tokens(windows, layout, 9, 17), x)
