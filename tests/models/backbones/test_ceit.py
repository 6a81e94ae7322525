import glob
import os
import re

import pytest
import torch
from timm.layers import Attention, resample_abs_pos_embed

from tests.conftest import (REPO, ODD_SIZES, build_model, expected_shapes, randomize, rel_err, seg_batch,
                            training_step)
from vitdense.checkpoint import load_pretrained
from vitdense.models.backbones import CeiT, CeiTClassifier
from vitdense.models.backbones.ceit import ClassTokenAttention, LocallyEnhancedFeedForward

TINY4 = dict(embed_dim=192, depth=4, num_heads=3)  # CeiT-T width, 4 blocks: fast


def randomize_bn(module, seed=0):
    """Non-trivial running statistics so eval-mode BatchNorms are not identities."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def test_classifier_parameter_counts_match_the_paper():
    """CeiT paper, Table: CeiT-T 6.4M, CeiT-S 24.2M, CeiT-B 94.4M parameters (1000 classes)."""
    counts = {}
    for arch in ('tiny', 'small', 'base'):
        with torch.device('meta'):
            counts[arch] = sum(p.numel() for p in CeiTClassifier(arch).parameters())
    assert counts == {'tiny': 6_356_904, 'small': 24_204_840, 'base': 94_405_416}
    assert [round(c / 1e6, 1) for c in counts.values()] == [6.4, 24.2, 94.4]
    # the dense backbone: the classifier minus LCA / layer embedding / final norm / head, plus the pyramid
    with torch.device('meta'):
        classifier, dense = CeiTClassifier('tiny'), CeiT('tiny')
    only_classifier = sum(p.numel() for n, p in classifier.named_parameters()
                          if n.startswith(('lca.', 'pos_layer_embed', 'norm.', 'head.')))
    added = sum(p.numel() for n, p in dense.named_parameters() if n.startswith(('pyramid.', 'out_norms.')))
    assert sum(p.numel() for p in dense.parameters()) == counts['tiny'] - only_classifier + added


def test_leff_on_a_non_square_grid():
    """LeFF on a 5 x 7 grid equals the same convolutions applied to the NHWC-built NCHW map, leaves the
    class token alone, and is local: one changed token changes only its 3 x 3 neighbourhood."""
    torch.manual_seed(0)
    leff = LocallyEnhancedFeedForward(16, 64).eval()
    randomize_bn(leff)
    H, W = 5, 7
    x = torch.randn(2, 1 + H * W, 16)
    with torch.no_grad():
        y = leff(x, (H, W))
        grid = x[:, 1:].reshape(2, H, W, 16).permute(0, 3, 1, 2)
        ref = leff.act(leff.up_norm(leff.up_proj(grid)))
        ref = leff.act(leff.dw_norm(leff.dw_conv(ref)))
        ref = leff.act(leff.down_norm(leff.down_proj(ref)))
        assert torch.equal(y[:, 0], x[:, 0])
        assert rel_err(y[:, 1:].reshape(2, H, W, 16), ref.permute(0, 2, 3, 1)) <= 1e-6
        x2 = x.clone()
        x2[:, 1 + 2 * W + 5] += 1.0  # token at row 2, column 5
        changed = (leff(x2, (H, W)) - y)[:, 1:].abs().amax(dim=(0, 2)).reshape(H, W) > 0
    expected = torch.zeros(H, W, dtype=torch.bool)
    expected[1:4, 4:7] = True
    assert torch.equal(changed, expected)


def test_class_token_attention_is_the_last_row_of_full_attention():
    torch.manual_seed(0)
    full = Attention(48, num_heads=3, qkv_bias=True).eval()
    lca_attn = ClassTokenAttention(48, num_heads=3)
    lca_attn.load_state_dict(full.state_dict())
    x = torch.randn(2, 12, 48)
    with torch.no_grad():
        assert rel_err(lca_attn(x), full(x)[:, -1:]) <= 1e-6


def test_classifier_uses_every_layer_class_token():
    model = CeiTClassifier(TINY4, num_classes=10, drop_path_rate=0.0).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (2, 10) and torch.isfinite(logits).all()
        assert model(torch.randn(1, 3, 200, 264)).shape == (1, 10)  # position embedding resampled
        # the first block's class token enters through LCA (a random shift: LayerNorm removes constant ones)
        model.pos_layer_embed[:, 0] += torch.randn(192)
        assert rel_err(model(x), logits) > 1e-3


@pytest.mark.parametrize('hw', ODD_SIZES[:3])
def test_pyramid_shapes_any_size(hw):
    model = CeiT(TINY4, drop_path_rate=0.0).eval()
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        outs = model(x)
        tokens, grid = model.forward_tokens(x)
    assert grid == (-(-hw[0] // 16), -(-hw[1] // 16))
    assert tokens.shape[1] == 1 + grid[0] * grid[1]
    assert [tuple(o.shape[1:]) for o in outs] == expected_shapes(*hw, [48, 96, 192, 192])
    assert all(torch.isfinite(o).all() for o in outs)


def official_layout(sd):
    """vitdense CeiT names -> coeusguo/ceit names."""
    renames = [('patch_embed.proj.', 'i2t.proj.'), ('patch_embed.', 'i2t.backbone.'),
               ('leff.up_proj.', 'leff.conv1.'), ('leff.up_norm.', 'leff.bn1.'), ('leff.dw_conv.', 'leff.conv2.'),
               ('leff.dw_norm.', 'leff.bn2.'), ('leff.down_proj.', 'leff.conv3.'), ('leff.down_norm.', 'leff.bn3.'),
               ('lca.mlp.', 'lca.feedforward.')]
    out = {}
    for k, v in sd.items():
        for old, new in renames:
            if old in k:
                k = k.replace(old, new)
                break
        out[k] = v
    return out


def test_official_checkpoint_into_classifier_and_dense_backbone(tmp_path):
    source = CeiTClassifier(TINY4, drop_path_rate=0.0).eval()
    sd = randomize(source.state_dict(), seed=1)
    sd = {k: (v.abs() + 0.5 if k.endswith('running_var') else v) for k, v in sd.items()}
    source.load_state_dict(sd)
    official = official_layout(sd)
    assert any(k.startswith('i2t.backbone.conv') for k in official)
    assert any(re.match(r'blocks\.\d+\.leff\.bn3\.', k) for k in official)
    path = tmp_path / 'ceit_tiny_patch16_224.pth'
    torch.save({'model': official}, path)

    classifier = CeiTClassifier(TINY4, drop_path_rate=0.0, leff_final_act=True).eval()
    report = load_pretrained(classifier, str(path))
    assert not report.missing and not report.dropped
    assert 'coeusguo/ceit layout remapped' in report.notes
    assert any('leff_final_act=False' in n for n in report.notes)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert rel_err(classifier(x), source(x)) <= 1e-6

    dense = CeiT(TINY4, img_size=512, drop_path_rate=0.0).eval()
    report = load_pretrained(dense, str(path))
    assert sorted({k.split('.')[0] for k in report.missing}) == ['out_norms', 'pyramid'] and not report.dropped
    assert 'classifier parts dropped: head, lca, norm, pos_layer_embed' in report.notes
    assert 'pos_embed interpolated from 14x14 to 32x32' in report.notes
    expected = resample_abs_pos_embed(sd['pos_embed'], new_size=[32, 32], num_prefix_tokens=1)
    assert torch.allclose(dense.pos_embed, expected)
    with torch.no_grad():  # same tokens as the classifier's trunk (both resample to the 20x24 grid)
        x = torch.randn(1, 3, 320, 384)
        dense_224 = CeiT(TINY4, drop_path_rate=0.0).eval()
        load_pretrained(dense_224, str(path))
        tokens, hw = dense_224.forward_tokens(x)
        trunk, hw2 = classifier.embed(x)
        assert hw == hw2 == (20, 24)
        assert rel_err(tokens, classifier.run_blocks(trunk, hw2)) <= 1e-6


def test_frozen_stages_keep_batchnorm_statistics():
    model = CeiT(TINY4, frozen_stages=1, drop_path_rate=0.0)
    model.train()
    stem_mean = model.patch_embed.bn.running_mean.clone()
    leff_mean = model.blocks[0].leff.up_norm.running_mean.clone()
    live_mean = model.blocks[1].leff.up_norm.running_mean.clone()
    sum(o.sum() for o in model(torch.randn(2, 3, 64, 64))).backward()
    assert torch.equal(model.patch_embed.bn.running_mean, stem_mean)
    assert torch.equal(model.blocks[0].leff.up_norm.running_mean, leff_mean)
    assert not torch.equal(model.blocks[1].leff.up_norm.running_mean, live_mean)
    assert model.patch_embed.conv.weight.grad is None and model.pos_embed.grad is None
    assert model.blocks[0].attn.qkv.weight.grad is None and model.blocks[1].attn.qkv.weight.grad is not None


def test_layer_depth():
    with torch.device('meta'):
        model = CeiT('tiny')
    assert model.get_layer_depth('patch_embed.conv.weight') == (0, 14)
    assert model.get_layer_depth('pos_embed') == (0, 14)
    assert model.get_layer_depth('blocks.5.leff.dw_conv.weight') == (6, 14)
    assert model.get_layer_depth('pyramid.levels.1.0.weight') == (13, 14)
    assert model.get_layer_depth('blocks.11.leff.down_norm.bias', 'stage_wise') == (4, 6)


# the detection / segmentation configs (configs/ceit/ may also hold classification ones)
CEIT_CONFIGS = sorted(p for pattern in ('mask-rcnn_*.py', 'upernet_*.py')
                      for p in glob.glob(os.path.join(REPO, 'configs', 'ceit', pattern)))


def test_configs_use_layer_decay():
    """(Every config's channels against its heads: tests/test_configs.py.)"""
    from mmengine.config import Config

    assert len(CEIT_CONFIGS) == 8
    for path in CEIT_CONFIGS:
        cfg = Config.fromfile(path)
        assert cfg.model.backbone.type == 'vitdense.CeiT', path
        assert cfg.optim_wrapper.constructor == 'vitdense.LayerDecayOptimWrapperConstructor', path


def test_upernet_training_step_on_cpu():
    from mmengine.config import Config
    cfg = Config.fromfile(os.path.join(REPO, 'configs/ceit/upernet_ceit-t-p16_mini-ade20k.py'))
    cfg.model.backbone.arch = TINY4  # the mini config's CeiT-T with 4 blocks (all 12: tests/test_configs.py)
    cfg.model.data_preprocessor.size = (80, 112)  # pad to the inputs' own size, not the 256 crop: a small step
    model = build_model(cfg)
    training_step(model, cfg.optim_wrapper, seg_batch(model, (80, 112)), [model.backbone.blocks[2].leff.dw_conv.weight])
