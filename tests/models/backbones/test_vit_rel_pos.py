"""ViTDet's decomposed relative position bias in vitdense.VisionTransformer (``use_rel_pos``): parity with timm's
``VisionTransformerSAM`` (the same bias) at the pretraining grid and at a detection grid with windows, the
tables resampled on load and at run time, padded windows against a plain restatement, bad values."""
import glob
import os
from functools import partial

import pytest
import torch
import torch.nn as nn
from timm.layers import resample_abs_pos_embed_nhwc
from timm.models.vision_transformer_sam import VisionTransformerSAM

from tests.conftest import REPO, randomize, rel_err
from vitdense.runtime.errors import describe_error
from vitdense.checkpoint import CheckpointError, load_pretrained
from vitdense.models.backbones import VisionTransformer
from vitdense.models.backbones.vit import RelPosAttention, windowed_attention

ARCH = dict(embed_dim=96, depth=4, num_heads=3)
GLOBAL = (1, 3)


def samvit(img_size, window_size):
    """timm's SAM / ViTDet ViT at CPU-test size, LayerNorm eps as vitdense's blocks (1e-6)."""
    return VisionTransformerSAM(img_size=img_size, patch_size=16, embed_dim=96, depth=4, num_heads=3,
                                window_size=window_size, global_attn_indexes=GLOBAL, use_rel_pos=True,
                                norm_layer=partial(nn.LayerNorm, eps=1e-6), neck_chans=32, num_classes=0).eval()


def ours(img_size, window_size, **kwargs):
    return VisionTransformer(ARCH, img_size=img_size, window_size=window_size, global_attn_indexes=GLOBAL,
                             use_rel_pos=True, with_cls_token=False, drop_path_rate=0.0, **kwargs).eval()


def random_samvit_state_dict(img_size=128, window_size=4, seed=0):
    """A random samvit state dict in which the bias matters: tables of std 1, LayerNorm gains near 1 (so the
    queries are not shrunk to nothing)."""
    sd = randomize(samvit(img_size, window_size).state_dict(), seed=seed)
    for key, value in sd.items():
        if 'rel_pos' in key:
            sd[key] = value * 20
        elif '.norm' in key and key.endswith('weight'):
            sd[key] = value + 1
    return sd


def our_block_outputs(model, x):
    """(B, C, H, W) after every block, as timm's forward_intermediates gives them."""
    tokens, (H, W) = model.embed(x)
    mask = model.key_mask(tokens, (H, W))
    outputs = []
    for block in model.blocks:
        tokens = block(tokens, (H, W), mask)
        outputs.append(tokens.transpose(1, 2).reshape(x.shape[0], -1, H, W))
    return outputs


def timm_block_outputs(ref, x):
    return ref.forward_intermediates(x, intermediates_only=True)


def assert_blocks_match(model, ref, x):
    with torch.no_grad():
        mine, theirs = our_block_outputs(model, x), timm_block_outputs(ref, x)
    assert len(mine) == len(theirs) == 4
    for i, (a, b) in enumerate(zip(mine, theirs)):
        assert a.shape == b.shape
        assert rel_err(a, b) <= 1e-5, f'block {i}: {rel_err(a, b)}'
    return mine


def test_table_shapes_follow_each_blocks_extent():
    """Window blocks: 2 * window - 1 rows; global blocks: 2 * grid - 1 (the img_size grid); head_dim columns;
    zero at init (ViTDet), so the model starts as the plain ViT."""
    model = ours(img_size=(192, 256), window_size=6)
    for i, block in enumerate(model.blocks):
        h, w = (12, 16) if i in GLOBAL else (6, 6)
        assert block.attn.rel_pos_h.shape == (2 * h - 1, 32) and block.attn.rel_pos_w.shape == (2 * w - 1, 32)
        assert not block.attn.rel_pos_h.any() and not block.attn.rel_pos_w.any()
    assert not any('rel_pos' in k for k in VisionTransformer(ARCH).state_dict())  # off by default


def test_samvit_parity_at_the_pretraining_grid(tmp_path):
    """One random timm samvit state dict (img 128: 8x8 grid, windows of 4, blocks 1 and 3 global) through
    init_cfg's loader gives timm's block outputs; its bias really moves them."""
    sd = random_samvit_state_dict()
    ref = samvit(128, 4)
    ref.load_state_dict(sd)
    path = tmp_path / 'samvit.pth'
    torch.save(sd, path)
    model = ours(128, 4)
    report = load_pretrained(model, str(path))
    assert not report.dropped and all(k.startswith(('pyramid.', 'out_norms.')) for k in report.missing)
    assert any('classifier parts dropped: neck' in n for n in report.notes)
    x = torch.randn(2, 3, 128, 128)
    assert_blocks_match(model, ref, x)
    # the bias is a large part of what attention computes here, so the comparison sees the tables
    tokens, hw = model.embed(x)
    with torch.no_grad():
        for block in model.blocks[:2]:  # a window block and a global one
            attn_in = block.norm1(tokens)
            with_bias = windowed_attention(block.attn, attn_in, hw, block.window_size, None)
            block.attn.rel_pos_h.data.zero_()
            block.attn.rel_pos_w.data.zero_()
            assert rel_err(windowed_attention(block.attn, attn_in, hw, block.window_size, None), with_bias) > 0.3


def test_official_sam_layout_loads_the_same_tensors(tmp_path):
    """SAM's own release (``image_encoder.`` keys, ``mlp.lin1`` / ``lin2``, plus the prompt encoder and mask
    decoder) gives the same backbone tensors as timm's samvit layout."""
    sd = random_samvit_state_dict()
    official = {'image_encoder.' + k.replace('.mlp.fc', '.mlp.lin'): v for k, v in sd.items()}
    official['mask_decoder.iou_token.weight'] = torch.randn(1, 32)
    official['prompt_encoder.pe_layer.positional_encoding_gaussian_matrix'] = torch.randn(2, 16)
    loaded = []
    for name, state in (('timm', sd), ('sam', official)):
        torch.save(state, tmp_path / f'{name}.pth')
        model = ours(128, 4)
        report = load_pretrained(model, str(tmp_path / f'{name}.pth'))
        assert not report.dropped
        loaded.append(model.state_dict())
    assert 'official SAM layout: the image encoder taken, its prompt encoder / mask decoder dropped' in \
        report.notes
    for key, value in loaded[0].items():
        if not key.startswith(('pyramid.', 'out_norms.')):
            assert torch.equal(loaded[1][key], value), key


def test_samvit_without_absolute_positions_starts_with_a_zero_pos_embed(tmp_path):
    """timm's samvit_base_patch16_224 layout (use_abs_pos=False): our position embedding loads as zero, so the
    blocks compute timm's network."""
    ref = VisionTransformerSAM(img_size=128, patch_size=16, embed_dim=96, depth=4, num_heads=3, window_size=4,
                               global_attn_indexes=GLOBAL, use_rel_pos=True, use_abs_pos=False, neck_chans=None,
                               norm_layer=partial(nn.LayerNorm, eps=1e-6), num_classes=0).eval()
    sd = {k: v * 20 if 'rel_pos' in k else v for k, v in randomize(ref.state_dict(), seed=1).items()}
    ref.load_state_dict(sd)
    assert 'pos_embed' not in sd
    torch.save(sd, tmp_path / 'samvit_224.pth')
    model = ours(128, 4)
    report = load_pretrained(model, str(tmp_path / 'samvit_224.pth'))
    assert not model.pos_embed.any() and 'pos_embed' not in report.missing
    assert_blocks_match(model, ref, torch.randn(1, 3, 128, 128))


def test_samvit_parity_at_a_detection_grid_with_windows(tmp_path):
    """The 128-pretrained checkpoint in a model for 192 inputs with windows of 6: our tables are resampled at load
    (window 7 -> 11 rows, global 15 -> 23, linear) and equal timm fed the checkpoint's own tables, which timm
    resamples at run time in its get_rel_pos. Then, at a 192x288 input (12x18 grid, 2x3 windows), our global
    blocks resample their tables at run time (23 -> 35 along w) as timm's do."""
    sd = random_samvit_state_dict()
    path = tmp_path / 'samvit.pth'
    torch.save(sd, path)
    model = ours(192, 6)
    report = load_pretrained(model, str(path))
    assert '4 decomposed relative position tables interpolated from extent 8 to 12' in report.notes
    assert '4 decomposed relative position tables interpolated from extent 4 to 6' in report.notes
    assert model.blocks[0].attn.rel_pos_h.shape == (11, 32) and model.blocks[1].attn.rel_pos_w.shape == (23, 32)

    ref = samvit(192, 6)
    tables = {k: v for k, v in sd.items() if 'rel_pos' in k}
    rest = {k: v for k, v in sd.items() if k not in tables}
    rest['pos_embed'] = resample_abs_pos_embed_nhwc(sd['pos_embed'], [12, 12])
    ref.load_state_dict(rest, strict=False)
    for key, table in tables.items():  # the checkpoint's 7- / 15-row tables: timm resamples them when it runs
        ref.get_submodule(key.rsplit('.', 1)[0]).register_parameter(key.rsplit('.', 1)[1], nn.Parameter(table))
    assert_blocks_match(model, ref, torch.randn(1, 3, 192, 192))

    ref_same_tables = samvit(192, 6)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(('pyramid.', 'out_norms.'))}
    own['pos_embed'] = own['pos_embed'].reshape(1, 12, 12, -1)
    missing, unexpected = ref_same_tables.load_state_dict(own, strict=False)
    assert not unexpected and all(k.startswith('neck.') for k in missing)
    assert_blocks_match(model, ref_same_tables, torch.randn(1, 3, 192, 288))


def restated_attention(attn, x, extent):
    """Decomposed relative position attention of an h x w patch of tokens (a window, possibly partial, or a
    grid) written out pair by pair, with the tables' centre row at offset ``extent`` - 1:
    logit((i, j), (k, l)) = q.k * scale + q . Rh[i - k + eh - 1] + q . Rw[j - l + ew - 1]."""
    B, h, w, C = x.shape
    heads, d = attn.num_heads, attn.head_dim
    q, k, v = attn.qkv(x.reshape(B, h * w, C)).reshape(B, h * w, 3, heads, d).permute(2, 0, 3, 1, 4)
    rows = torch.arange(h).repeat_interleave(w)
    cols = torch.arange(w).repeat(h)
    Rh = attn.rel_pos_h[rows[:, None] - rows[None, :] + extent[0] - 1]  # (N, N, d)
    Rw = attn.rel_pos_w[cols[:, None] - cols[None, :] + extent[1] - 1]
    logits = (q @ k.transpose(-2, -1)) * d ** -0.5 + torch.einsum('bhqd,qkd->bhqk', q, Rh + Rw)
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(B, h * w, C)
    return attn.proj(out).reshape(B, h, w, C)


def test_padded_windows_equal_a_restatement_on_the_real_tokens():
    """On a 6x7 map with windows of 4 (padded to 8x8, padded keys masked), every window's output is the bias
    attention among its real tokens only, at their in-window offsets (timm / SAM let padding take part, so this
    is checked against a restatement)."""
    attn = RelPosAttention(32, 2, (4, 4), qkv_bias=True)
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    model = ours(128, 4)
    x = torch.randn(2, 6, 7, 32)
    with torch.no_grad():
        mask = model.key_mask(x.reshape(2, 42, 32), (6, 7))
        out = windowed_attention(attn, x.reshape(2, 42, 32), (6, 7), 4, mask).reshape(2, 6, 7, 32)
        for r0, c0 in [(0, 0), (0, 4), (4, 0), (4, 4)]:
            part = x[:, r0:r0 + 4, c0:c0 + 4]
            expected = restated_attention(attn, part, (4, 4))
            assert expected.shape[1:3] == (min(4, 6 - r0), min(4, 7 - c0))
            assert rel_err(out[:, r0:r0 + 4, c0:c0 + 4], expected) <= 1e-5


def test_global_blocks_resample_tables_for_other_grids_like_a_restatement():
    """A global block at a grid other than its table's (12x18 vs 8x8 tables): the bias uses the tables linearly
    resampled to 2 * 12 - 1 and 2 * 18 - 1 rows (the restatement resamples with np.interp at half-pixel
    centres)."""
    import numpy as np
    attn = RelPosAttention(32, 2, (8, 8), qkv_bias=True)
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    x = torch.randn(1, 12 * 18, 32)

    def resampled(table, length):
        old = table.shape[0]
        centres = (np.arange(length) + 0.5) * old / length - 0.5
        src = table.detach().double().numpy()
        columns = [np.interp(centres, np.arange(old), src[:, c]) for c in range(src.shape[1])]
        return torch.tensor(np.stack(columns, 1), dtype=torch.float32)

    with torch.no_grad():
        out = windowed_attention(attn, x, (12, 18), 0, None)
        restated = RelPosAttention(32, 2, (12, 18), qkv_bias=True)
        restated.load_state_dict({**attn.state_dict(), 'rel_pos_h': resampled(attn.rel_pos_h, 23),
                                  'rel_pos_w': resampled(attn.rel_pos_w, 35)})
        expected = restated_attention(restated, x.reshape(1, 12, 18, 32), (12, 18))
    assert out.shape == (1, 216, 32)
    assert rel_err(out, expected.reshape(1, 216, 32)) <= 1e-5


def test_bad_values_are_one_line(tmp_path):
    with pytest.raises(ValueError, match=r'use_rel_pos=True: the relative position bias has no position for a '
                                         r'class token; set with_cls_token=False') as err:
        VisionTransformer(ARCH, use_rel_pos=True)
    assert '\n' not in describe_error(err.value)

    sd = random_samvit_state_dict()
    path = tmp_path / 'samvit.pth'
    torch.save(sd, path)
    plain = VisionTransformer(ARCH, window_size=4, global_attn_indexes=GLOBAL, with_cls_token=False)
    with pytest.raises(CheckpointError, match=r'the checkpoint has decomposed relative position tables '
                                              r'\(blocks\.0\.attn\.rel_pos_h, \.\.\.\) and this VisionTransformer '
                                              r'has none; build it with use_rel_pos=True'):
        load_pretrained(plain, str(path))

    not_a_table = r'blocks\.0\.attn\.rel_pos_h has shape .*; a decomposed relative position table is \(2 \* size'
    for bad in (sd['blocks.0.attn.rel_pos_h'][None], sd['blocks.0.attn.rel_pos_h'][:6]):  # 3-D; even length
        torch.save({**sd, 'blocks.0.attn.rel_pos_h': bad}, path)
        with pytest.raises(CheckpointError, match=not_a_table) as err:
            load_pretrained(ours(128, 4), str(path))
        assert '\n' not in describe_error(err.value)


# the detection configs that follow ViTDet's recipe (windows of 14, global blocks 2, 5, 8, 11)
VITDET_CONFIGS = sorted(glob.glob(os.path.join(REPO, 'configs', 'vit', '*mask-rcnn_vit-*-w14_*.py')))


def test_vitdet_configs_use_relative_positions_and_the_others_do_not():
    from mmengine.config import Config

    assert len(VITDET_CONFIGS) == 9  # Mask R-CNN and its Cascade siblings, 1x and 3x, S and B, and the mini
    for path in VITDET_CONFIGS:
        backbone = Config.fromfile(path).model.backbone
        assert backbone.use_rel_pos is True and backbone.window_size == 14, path
    for path in glob.glob(os.path.join(REPO, 'configs', 'vit', '*.py')):
        if path not in VITDET_CONFIGS:
            assert not Config.fromfile(path).model.backbone.get('use_rel_pos', False), path
