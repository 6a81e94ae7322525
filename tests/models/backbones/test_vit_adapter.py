"""ViT-Adapter: each adapter piece against a direct computation, then the whole backbone on timm ViTs (narrow
variants of DeiT-S and DINOv2-S: depth 4, width 96, the code paths of the full models at a fraction of the CPU
time)."""
import math
import os

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.conftest import (ODD_SIZES, REPO, build_model, det_batch, expected_shapes, randomize, rel_err, seg_batch,
                            training_step)
from vitdense.errors import ConfigError
from vitdense.models.backbones import ViTAdapter
from vitdense.models.backbones.vit_adapter import (ConvFFN, DeformableCrossAttention, Extractor, Injector,
                                                   MultiLevelDWConv, SpatialPriorModule, even_interaction_indexes,
                                                   reference_points)

LN = nn.LayerNorm


# ---- the pieces ------------------------------------------------------------------------------------------------
def test_reference_points_are_token_centres_normalised_per_grid():
    points = reference_points([(2, 4), (1, 2)])
    assert points.shape == (1, 10, 1, 2)
    xy = points[0, :, 0]
    # grid 2 x 4: x at (j + 0.5) / 4, y at (i + 0.5) / 2, row-major; then grid 1 x 2
    assert torch.allclose(xy[:4], torch.tensor([[0.125, 0.25], [0.375, 0.25], [0.625, 0.25], [0.875, 0.25]]))
    assert torch.allclose(xy[4:8, 1], torch.full((4,), 0.75))
    assert torch.allclose(xy[8:], torch.tensor([[0.25, 0.5], [0.75, 0.5]]))


def pinned_attention(dim=4, points=1, offsets=((1.0, 0.0),)):
    """One head, one level: identity value / output projections, no norms, fixed sampling offsets (in tokens
    of the key grid) and uniform attention weights over the points."""
    attn = DeformableCrossAttention(dim, num_heads=1, num_levels=1, num_points=points, deform_ratio=1.0,
                                    norm_layer=lambda d: nn.Identity())
    msda = attn.attn
    with torch.no_grad():
        msda.sampling_offsets.weight.zero_()
        msda.sampling_offsets.bias.copy_(torch.tensor(offsets).flatten())
        msda.attention_weights.weight.zero_()
        msda.attention_weights.bias.zero_()
        for proj in (msda.value_proj, msda.output_proj):
            proj.weight.copy_(torch.eye(dim))
            proj.bias.zero_()
    return attn


def bilinear_zero_padded(grid, x, y):
    """A direct bilinear read of ``grid`` (h, w, C) at continuous pixel position (x, y) (pixel centres at
    integers), zero outside: what deformable attention samples."""
    h, w, C = grid.shape
    x0, y0 = int(torch.floor(torch.tensor(x))), int(torch.floor(torch.tensor(y)))
    out = torch.zeros(C)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * grid[yy, xx]
    return out


@pytest.mark.parametrize('offsets', [((1.0, 0.0),), ((0.5, -0.25),), ((-1.5, 0.75), (0.25, 2.0))])
def test_deformable_attention_samples_bilinearly_at_the_reference_point_plus_the_offset(offsets):
    """Queries on a 3 x 5 grid read a 4 x 6 key grid: each query's output is the mean over its points of the
    key map read bilinearly (zero padding) at its reference point (the query's centre, in the key grid's
    pixels) plus the point's offset in key tokens."""
    torch.manual_seed(0)
    attn = pinned_attention(points=len(offsets), offsets=offsets)
    q_shape, k_shape = (3, 5), (4, 6)
    query = torch.randn(1, 15, 4)
    keys = torch.randn(1, 24, 4)
    out = attn(query, keys, reference_points([q_shape]), [k_shape])
    grid = keys[0].reshape(*k_shape, 4)
    for i in range(q_shape[0]):
        for j in range(q_shape[1]):
            cx, cy = (j + 0.5) / q_shape[1] * k_shape[1] - 0.5, (i + 0.5) / q_shape[0] * k_shape[0] - 0.5
            want = sum(bilinear_zero_padded(grid, cx + dx, cy + dy) for dx, dy in offsets) / len(offsets)
            torch.testing.assert_close(out[0, i * q_shape[1] + j], want, rtol=1e-5, atol=1e-6)


def test_injector_with_gamma_zero_is_the_identity_and_otherwise_adds_gamma_times_the_attention():
    torch.manual_seed(0)
    injector = Injector(8, num_heads=2, num_points=4, deform_ratio=0.5, norm_layer=LN)
    assert injector.gamma.shape == (8,) and not injector.gamma.any()  # the paper's zero init
    x = torch.randn(2, 12, 8)
    c_shapes = [(6, 8), (3, 4), (2, 2)]
    c = torch.randn(2, 48 + 12 + 4, 8)
    x_points = reference_points([(3, 4)])
    assert torch.equal(injector(x, c, x_points, c_shapes), x)
    with torch.no_grad():
        injector.gamma.copy_(torch.linspace(-1, 1, 8))
    attn = injector.cross_attn(x, c, x_points, c_shapes)
    assert attn.abs().sum() > 0
    torch.testing.assert_close(injector(x, c, x_points, c_shapes), x + torch.linspace(-1, 1, 8) * attn)


def test_multi_level_dwconv_convolves_each_level_apart():
    torch.manual_seed(0)
    conv = MultiLevelDWConv(4)
    shapes = [(4, 6), (2, 3), (1, 2)]
    maps = [torch.randn(2, 4, h, w) for h, w in shapes]
    tokens = torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)
    out = conv(tokens, shapes)
    want = torch.cat([conv.dwconv(m).flatten(2).transpose(1, 2) for m in maps], dim=1)
    torch.testing.assert_close(out, want)
    # a level's border does not see its neighbour level: zero one level, the others keep their outputs
    tokens2 = tokens.clone()
    tokens2[:, 24:30] = 0
    out2 = conv(tokens2, shapes)
    torch.testing.assert_close(out2[:, :24], out[:, :24])
    torch.testing.assert_close(out2[:, 30:], out[:, 30:])


def test_extractor_adds_the_attention_then_the_conv_ffn():
    torch.manual_seed(0)
    extractor = Extractor(8, num_heads=2, num_points=4, deform_ratio=1.0, norm_layer=LN, cffn_ratio=0.5).eval()
    c_shapes, x_shape = [(4, 4), (2, 2), (1, 1)], (2, 2)
    c, x = torch.randn(1, 21, 8), torch.randn(1, 4, 8)
    c_points = reference_points(c_shapes)
    with torch.no_grad():
        extractor.cross_attn.attn.output_proj.bias.fill_(0.1)  # non-zero attention output
        out = extractor(c, x, c_points, c_shapes, x_shape)
        mid = c + extractor.cross_attn(c, x, c_points, [x_shape])
        want = mid + extractor.ffn(extractor.ffn_norm(mid), c_shapes)
    assert not torch.allclose(mid, c)
    torch.testing.assert_close(out, want)
    assert isinstance(extractor.ffn, ConvFFN) and extractor.ffn.fc1.out_features == 4


@pytest.mark.parametrize('hw', ODD_SIZES)
def test_spatial_prior_module_levels_have_ceil_sizes(hw):
    spm = SpatialPriorModule(inplanes=8, embed_dim=16).eval()
    with torch.no_grad():
        levels = spm(torch.randn(1, 3, *hw))
    assert [tuple(c.shape) for c in levels] == [(1, 16, -(-hw[0] // s), -(-hw[1] // s)) for s in (4, 8, 16, 32)]


def test_spatial_prior_module_strides_shifting_the_image_shifts_each_level_by_shift_over_stride():
    """Level s of an image shifted right and down by 32 pixels is the original level shifted by 32 / s tokens,
    away from the borders (where padding differs): the levels really are at strides 4 / 8 / 16 / 32."""
    torch.manual_seed(0)
    spm = SpatialPriorModule(inplanes=8, embed_dim=16).eval()
    for bn in spm.modules():  # non-trivial eval-mode BatchNorms
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    image = torch.randn(1, 3, 256, 256)
    shifted = torch.zeros_like(image)
    shifted[..., 32:, 32:] = image[..., :-32, :-32]
    with torch.no_grad():
        levels, shifted_levels = spm(image), spm(shifted)
    for level, moved, stride in zip(levels, shifted_levels, (4, 8, 16, 32)):
        k = 32 // stride
        margin = 64 // stride  # the receptive field's reach into the border, in tokens
        n = level.shape[-1]
        torch.testing.assert_close(moved[..., k + margin:n - margin, k + margin:n - margin],
                                   level[..., margin:n - k - margin, margin:n - k - margin], rtol=1e-5, atol=1e-5)


# ---- the backbone ----------------------------------------------------------------------------------------------
NARROW = dict(depth=4, embed_dim=96, num_heads=3)
ADAPTER = dict(interaction_indexes=[[0, 1], [2, 3]], conv_inplane=16, deform_num_heads=3, drop_path_rate=0.0)


def adapter(name='deit_small_patch16_224', img_size=64, class_token=True, **kwargs):
    """A narrow ViT-Adapter (2 interactions of 2 blocks, the last with its two extra extractors)."""
    settings = dict(ADAPTER, **kwargs)
    return ViTAdapter(name, img_size=img_size, model_kwargs=dict(NARROW, class_token=class_token), **settings)


def saved_timm(name, path, img_size=64, seed=0):
    ref = timm.create_model(name, pretrained=False, img_size=img_size, **NARROW).eval()
    ref.load_state_dict(randomize(ref.state_dict(), seed=seed))
    torch.save(ref.state_dict(), path)
    return ref


def loaded(path, **kwargs):
    """A narrow adapter loading ``path`` through ``init_cfg`` (eval mode), and the load report."""
    import vitdense.checkpoint as checkpoint
    model = adapter(init_cfg=dict(type='Pretrained', checkpoint=str(path)), **kwargs)
    reports, real = [], checkpoint.load_pretrained
    checkpoint.load_pretrained = lambda *a, **k: reports.append(real(*a, **k)) or reports[-1]
    try:
        model.init_weights()
    finally:
        checkpoint.load_pretrained = real
    assert len(reports) == 1
    return model.eval(), reports[0]


def recording_blocks(model):
    """Record every ``run_blocks`` result of ``model`` (the ViT's tokens after each interaction's blocks)."""
    calls = []
    real = model.run_blocks

    def run_blocks(tokens, start=0, end=None):
        out = real(tokens, start, end)
        calls.append((start, end, out))
        return out
    model.run_blocks = run_blocks
    return calls


@pytest.mark.parametrize('name, channels', [('deit_small_patch16_224', 96), ('vit_small_patch14_dinov2', 96)])
@pytest.mark.parametrize('hw', ODD_SIZES)
def test_pyramid_shapes_at_odd_sizes_batch_one(name, channels, hw):
    model = adapter(name, img_size=56 if 'patch14' in name else 64, window_size=4, global_attn_indexes=(1, 3),
                    class_token=False).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *hw))
    assert [tuple(o.shape[1:]) for o in outs] == expected_shapes(*hw, [channels] * 4)
    assert all(torch.isfinite(o).all() for o in outs)


def test_out_indices_pick_levels():
    model = adapter(out_indices=(1, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape[-2:]) for o in outs] == [(8, 12), (2, 3)]
    assert [type(n) for n in model.out_norms] == [nn.Identity, nn.BatchNorm2d, nn.Identity, nn.BatchNorm2d]


def test_runs_the_vits_blocks_in_the_interaction_groups_and_at_init_computes_the_plain_vit(tmp_path):
    """The blocks run group by group as ``interaction_indexes`` say, and with the injectors' gammas at zero
    (the paper's init) the ViT inside the adapter computes exactly what timm's model computes for the same
    weights: timm's last ``forward_intermediates`` map at the pretraining size."""
    ref = saved_timm('deit_small_patch16_224', tmp_path / 'deit.pth')
    model, _ = loaded(tmp_path / 'deit.pth')
    calls = recording_blocks(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        model(x)
        want = ref.forward_intermediates(x, intermediates_only=True, norm=False)[-1]
    assert [(start, end) for start, end, _ in calls] == [(0, 2), (2, 4)]
    tokens = calls[-1][2]
    got = tokens.patches.transpose(1, 2).reshape(2, 96, *tokens.grid)
    assert tokens.grid == (4, 4) and rel_err(got, want) <= 1e-5


def test_vit_feature_is_added_to_every_level_as_the_papers_bilinear_resampling():
    """For patch 16 and H, W multiples of 32, each level gets the ViT's last map resampled x4 / x2 / x1 / x0.5
    (the paper's F.interpolate(..., scale_factor, 'bilinear')); in eval mode with fresh BatchNorm statistics the
    output norms divide by sqrt(1 + eps)."""
    torch.manual_seed(0)
    model = adapter().eval()
    calls = recording_blocks(model)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        with_vit = model(x)
        model.add_vit_feature = False
        without = model(x)
    tokens = calls[-1][2]
    vit_map = tokens.patches.transpose(1, 2).reshape(1, 96, *tokens.grid)
    scale = math.sqrt(1 + model.out_norms[0].eps)
    for level, (a, b, factor) in enumerate(zip(with_vit, without, (4, 2, 1, 0.5))):
        added = F.interpolate(vit_map, scale_factor=factor, mode='bilinear', align_corners=False) \
            if factor != 1 else vit_map
        torch.testing.assert_close((a - b) * scale, added, rtol=1e-4, atol=1e-5, msg=f'level {level}')


def test_injectors_change_the_vit_tokens_once_their_gammas_move():
    torch.manual_seed(0)
    model = adapter().eval()
    calls = recording_blocks(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model(x)
        before = calls[-1][2].patches
        model.interactions[1].injector.gamma.fill_(0.5)
        model(x)
        after = calls[-1][2].patches
    assert rel_err(after, before) > 1e-3


def test_timm_checkpoint_loads_into_the_vit_and_the_adapter_stays_at_init(tmp_path):
    ref = saved_timm('deit_small_patch16_224', tmp_path / 'deit.pth')
    torch.manual_seed(1)
    fresh = adapter()
    torch.manual_seed(1)
    model, report = loaded(tmp_path / 'deit.pth')
    timm_sd = ref.state_dict()
    own = model.state_dict()
    assert {k for k in report.loaded} == {'vit.' + k for k in timm_sd if not k.startswith(('head.', 'norm.'))}
    for key in report.loaded:
        assert torch.equal(own[key], timm_sd[key[4:]]), key
    assert {k.split('.')[0] for k in report.missing} == {'spm', 'level_embed', 'interactions', 'up', 'out_norms'}
    assert all(not k.startswith('vit.') for k in report.missing)
    for key in report.missing:  # the adapter is exactly the initialisation of a model built the same way
        assert torch.equal(own[key], fresh.state_dict()[key]), key
    assert not own['interactions.0.injector.gamma'].any()


def test_class_token_and_its_position_dropped_for_a_vit_without_one(tmp_path):
    """The paper's ViT has no class token: a DeiT checkpoint's token and the first position of its pos_embed
    go, the 4 x 4 patch positions load as they are."""
    ref = saved_timm('deit_small_patch16_224', tmp_path / 'deit.pth')
    model, report = loaded(tmp_path / 'deit.pth', class_token=False)
    assert model.vit.cls_token is None and model.num_prefix_tokens == 0
    assert torch.equal(model.vit.pos_embed, ref.pos_embed[:, 1:])
    assert 'cls_token' in report.adaptation.dropped
    assert not report.dropped and 'vit.cls_token' not in report.loaded


def test_dinov2_checkpoint_patch14_layer_scale_at_another_grid(tmp_path):
    """A DINOv2 state dict (patch 14, layer scale, a 37x37 grid at 518 px) into an adapter built for 56 px: the
    class token goes, the position embedding is resampled to 4 x 4, the layer scales load; the ViT at init is
    timm's DINOv2 at that size."""
    ref = saved_timm('vit_small_patch14_dinov2', tmp_path / 'dinov2.pth', img_size=518)
    model, report = loaded(tmp_path / 'dinov2.pth', name='vit_small_patch14_dinov2', img_size=56,
                           class_token=False)
    assert 'cls_token' in report.adaptation.dropped
    assert model.patch_size == 14
    assert torch.equal(model.vit.blocks[2].ls1.gamma, ref.blocks[2].ls1.gamma)
    assert report.adaptation.resized['vit.pos_embed'] == ((1, 1 + 37 * 37, 96), (1, 16, 96))
    small = timm.create_model('vit_small_patch14_dinov2', pretrained=False, img_size=56, class_token=False,
                              global_pool='', **NARROW).eval()
    missing = small.load_state_dict({k[4:]: v for k, v in model.state_dict().items() if k.startswith('vit.')},
                                    strict=False).missing_keys
    assert missing == ['norm.weight', 'norm.bias']  # the final norm: not part of the adapter's ViT
    calls = recording_blocks(model)
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        model(x)
        want = small.forward_intermediates(x, intermediates_only=True, norm=False)[-1]
    tokens = calls[-1][2]
    assert rel_err(tokens.patches.transpose(1, 2).reshape(1, 96, 4, 4), want) <= 1e-5


def test_a_vitdense_adapter_checkpoint_round_trips(tmp_path):
    torch.manual_seed(0)
    source = adapter(class_token=False)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    torch.save({'state_dict': {'backbone.' + k: v for k, v in source.state_dict().items()}}, tmp_path / 'det.pth')
    torch.manual_seed(5)
    model, report = loaded(tmp_path / 'det.pth', class_token=False)
    assert not report.missing and not report.dropped
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_frozen_stages_freeze_the_vit_stem_and_first_blocks_never_the_adapter():
    model = adapter(frozen_stages=2, class_token=False)
    model.train()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters()
                      if n.startswith(('vit.patch_embed.', 'vit.blocks.0.', 'vit.blocks.1.')) or n == 'vit.pos_embed'}
    assert not model.vit.patch_embed.training and not model.vit.blocks[1].training
    assert model.vit.blocks[2].training and model.spm.training and model.interactions[0].training
    out = model(torch.randn(2, 3, 64, 64))
    sum(o.mean() for o in out).backward()
    for name, p in model.named_parameters():
        assert (p.grad is None) == (name in frozen), name
    assert model.interactions[0].injector.gamma.grad.abs().sum() > 0


def test_layer_depth_vit_blocks_by_index_adapter_parts_last():
    """ViT-Adapter's layer decay (its BEiT-style constructor): patch / position embedding 0, block i i + 1, and
    every adapter part (SPM, level embedding, interactions, up-sampling, output norms) with the heads at the
    last depth, i.e. the full lr."""
    model = adapter()
    num = 4 + 2
    assert model.get_layer_depth('vit.patch_embed.proj.weight') == (0, num)
    assert model.get_layer_depth('vit.pos_embed') == (0, num)
    assert model.get_layer_depth('vit.cls_token') == (0, num)
    assert model.get_layer_depth('vit.blocks.2.mlp.fc1.weight') == (3, num)
    for name, _ in model.named_parameters():
        if not name.startswith('vit.'):
            assert model.get_layer_depth(name) == (num - 1, num), name
    assert model.get_layer_depth('vit.blocks.3.attn.qkv.weight', 'stage_wise') == (4, 6)
    assert model.get_layer_depth('spm.stem.0.weight', 'stage_wise') == (5, 6)


def test_interaction_indexes_default_and_bad_values():
    assert even_interaction_indexes(12) == [(0, 2), (3, 5), (6, 8), (9, 11)]
    assert even_interaction_indexes(24) == [(0, 5), (6, 11), (12, 17), (18, 23)]
    assert adapter(interaction_indexes=None).interaction_indexes == [(0, 0), (1, 1), (2, 2), (3, 3)]
    with pytest.raises(ConfigError, match='contiguous'):
        adapter(interaction_indexes=[[0, 1], [3, 3]])
    with pytest.raises(ConfigError, match='every block'):
        adapter(interaction_indexes=[[0, 1], [2, 2]])
    with pytest.raises(ConfigError, match='deform_num_heads=5'):
        adapter(deform_num_heads=5)


def test_the_last_interaction_has_two_extra_extractors():
    model = adapter()
    assert [len(i.extra_extractors) for i in model.interactions] == [0, 2]
    assert [len(i.extra_extractors) for i in adapter(use_extra_extractor=False).interactions] == [0, 0]


# ---- configs ---------------------------------------------------------------------------------------------------
def config(name):
    from mmengine.config import Config
    return Config.fromfile(os.path.join(REPO, 'configs', 'vit_adapter', name))


@pytest.mark.parametrize('name, published_m', [('mask-rcnn_vit-adapter-s_fpn_1x_coco.py', 48),
                                               ('mask-rcnn_vit-adapter-b_fpn_1x_coco.py', 120)])
def test_mask_rcnn_params_match_the_paper(name, published_m):
    """Counted on the meta device: the paper's (and czczup/ViT-Adapter's) 48M / 120M."""
    from vitdense.analysis.flops import complexity
    params = complexity(config(name), flops=False).params
    assert round(params / 1e6) == published_m


@pytest.mark.parametrize('name', ['mask-rcnn_vit-adapter-s_fpn_mini-coco.py', 'upernet_vit-adapter-s_mini-ade20k.py'])
def test_mini_config_training_step_moves_the_vit_and_the_adapter(name):
    torch.manual_seed(0)
    cfg = config(name)
    model = build_model(cfg)
    if cfg.default_scope == 'mmseg':
        model.data_preprocessor.size, model.data_preprocessor.size_divisor = None, 32
        data = seg_batch(model, hw=(64, 64))
    else:
        data = det_batch(model, hw=(64, 96))
    bb = model.backbone
    watched = [bb.vit.blocks[0].attn.qkv.weight, bb.vit.pos_embed, bb.spm.stem[0].weight, bb.level_embed,
               bb.interactions[0].injector.gamma, bb.interactions[-1].extra_extractors[1].ffn.fc2.weight,
               bb.up.weight, bb.out_norms[0].weight]
    training_step(model, cfg.optim_wrapper, data, watched)


def paper_reference_points(shapes):
    """czczup/ViT-Adapter's get_reference_points, restated."""
    points = []
    for h, w in shapes:
        ref_y, ref_x = torch.meshgrid(torch.linspace(0.5, h - 0.5, h), torch.linspace(0.5, w - 0.5, w),
                                      indexing='ij')
        points.append(torch.stack((ref_x.reshape(-1)[None] / w, ref_y.reshape(-1)[None] / h), -1))
    return torch.cat(points, 1)[:, :, None]


def paper_forward(m, image):
    """czczup/ViT-Adapter's ViTAdapter.forward (detection/mmdet_custom/models/backbones/vit_adapter.py and
    adapter_modules.py) restated on ``m``'s weights and ViT: its deform_inputs for an image of multiples of 32,
    its DWConv's split of the spatial tokens by N // 21, its x4 / x2 / x0.5 interpolations."""
    from vitdense.models.backbones.timm_vit import TokenMap
    B, _, h, w = image.shape
    H, W = h // 16, w // 16
    level_shapes = [(2 * H, 2 * W), (H, W), (H // 2, W // 2)]

    def layout(shapes):
        ss = torch.as_tensor(shapes, dtype=torch.long)
        return ss, torch.cat((ss.new_zeros((1,)), ss.prod(1).cumsum(0)[:-1]))
    ss1, lsi1 = layout(level_shapes)
    ss2, lsi2 = layout([(H, W)])
    ref1, ref2 = paper_reference_points([(H, W)]), paper_reference_points(level_shapes)

    def msda(cross, query, feat, ref, ss, lsi):
        return cross.attn(cross.query_norm(query), value=cross.feat_norm(feat), identity=torch.zeros(()),
                          reference_points=ref, spatial_shapes=ss, level_start_index=lsi)

    def dwconv(conv, x):
        n = x.shape[1] // 21
        parts = [x[:, :16 * n], x[:, 16 * n:20 * n], x[:, 20 * n:]]
        sizes = [(2 * H, 2 * W), (H, W), (H // 2, W // 2)]
        return torch.cat([conv(p.transpose(1, 2).reshape(B, -1, *s)).flatten(2).transpose(1, 2)
                          for p, s in zip(parts, sizes)], dim=1)

    c1, c2, c3, c4 = m.spm(image)
    c2, c3, c4 = (c.view(B, c.shape[1], -1).transpose(1, 2) + m.level_embed[i] for i, c in enumerate((c2, c3, c4)))
    c = torch.cat([c2, c3, c4], dim=1)
    tokens = m.embed_tokens(image)
    x = tokens.patches
    for i, layer in enumerate(m.interactions):
        first, last = m.interaction_indexes[i]
        x = x + layer.injector.gamma * msda(layer.injector.cross_attn, x, c, ref1, ss1, lsi1)
        x = m.run_blocks(TokenMap(x, tokens.prefix, (H, W)), first, last + 1).patches
        for extractor in (layer.extractor, *layer.extra_extractors):
            c = c + msda(extractor.cross_attn, c, x, ref2, ss2, lsi2)
            ffn = extractor.ffn
            c = c + ffn.fc2(ffn.act(dwconv(ffn.dwconv.dwconv, ffn.fc1(extractor.ffn_norm(c)))))
    dim = x.shape[-1]
    c2 = c[:, :c2.size(1)].transpose(1, 2).view(B, dim, 2 * H, 2 * W)
    c3 = c[:, 4 * H * W:5 * H * W].transpose(1, 2).view(B, dim, H, W)
    c4 = c[:, 5 * H * W:].transpose(1, 2).view(B, dim, H // 2, W // 2)
    c1 = m.up(c2) + c1
    x3 = x.transpose(1, 2).view(B, dim, H, W)
    x1 = F.interpolate(x3, scale_factor=4, mode='bilinear', align_corners=False)
    x2 = F.interpolate(x3, scale_factor=2, mode='bilinear', align_corners=False)
    x4 = F.interpolate(x3, scale_factor=0.5, mode='bilinear', align_corners=False)
    return [norm(f) for norm, f in zip(m.out_norms, (c1 + x1, c2 + x2, c3 + x3, c4 + x4))]


def test_equals_a_restatement_of_the_papers_forward():
    """Random weights everywhere (gammas, BatchNorm statistics included), windowed blocks, an image of multiples
    of 32: the backbone's pyramid equals czczup/ViT-Adapter's forward restated on the same modules."""
    torch.manual_seed(0)
    model = adapter(class_token=False, window_size=2, global_attn_indexes=(1, 3))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith('vit.'):
                p.add_(torch.randn_like(p) * 0.05)
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.uniform_(-0.1, 0.1)
                bn.running_var.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ours = model(x)
        want = paper_forward(model, x)
    assert all(i.injector.gamma.abs().sum() > 0 for i in model.interactions)
    for level, (a, b) in enumerate(zip(ours, want)):
        assert a.shape == b.shape
        assert rel_err(a, b) <= 1e-5, level
