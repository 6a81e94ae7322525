import copy
import functools
import glob
import math
import os
import re

import pytest
import torch
import torch.nn.functional as F
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
    """LeFF on a 5 x 7 grid equals the same convolutions applied to the NHWC-built NCHW map (ending with the
    last BN; ``final_act=True`` adds a GELU after it), leaves the class token alone, and is local: one changed
    token changes only its 3 x 3 neighbourhood."""
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
        ref = leff.down_norm(leff.down_proj(ref))
        assert torch.equal(y[:, 0], x[:, 0])
        assert rel_err(y[:, 1:].reshape(2, H, W, 16), ref.permute(0, 2, 3, 1)) <= 1e-6
        with_gelu = LocallyEnhancedFeedForward(16, 64, final_act=True).eval()
        with_gelu.load_state_dict(leff.state_dict())
        assert rel_err(with_gelu(x, (H, W))[:, 1:].reshape(2, H, W, 16), F.gelu(ref).permute(0, 2, 3, 1)) <= 1e-6
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

    classifier = CeiTClassifier(TINY4, drop_path_rate=0.0).eval()
    report = load_pretrained(classifier, str(path))
    assert not report.missing and not report.dropped
    assert 'coeusguo/ceit layout remapped' in report.notes
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


def ceit_config(path):
    """Config.fromfile(path) (absolute or relative to the repository), read once per session: the mmdet /
    mmseg bases take seconds to resolve. Deep-copy before changing it."""
    return _read_config(os.path.abspath(os.path.join(REPO, path)))


@functools.lru_cache(maxsize=None)
def _read_config(path):
    from mmengine.config import Config
    return Config.fromfile(path)


def test_configs_use_layer_decay():
    """(Every config's channels against its heads: tests/test_configs.py.)"""
    assert len(CEIT_CONFIGS) == 8
    for path in CEIT_CONFIGS:
        cfg = ceit_config(path)
        assert cfg.model.backbone.type == 'vitdense.CeiT', path
        assert cfg.optim_wrapper.constructor == 'vitdense.LayerDecayOptimWrapperConstructor', path


def test_upernet_training_step_on_cpu():
    cfg = copy.deepcopy(ceit_config('configs/ceit/upernet_ceit-t-p16_mini-ade20k.py'))
    cfg.model.backbone.arch = TINY4  # the mini config's CeiT-T with 4 blocks (all 12: tests/test_configs.py)
    cfg.model.data_preprocessor.size = (80, 112)  # pad to the inputs' own size, not the 256 crop: a small step
    model = build_model(cfg)
    training_step(model, cfg.optim_wrapper, seg_batch(model, (80, 112)), [model.backbone.blocks[2].leff.dw_conv.weight])


# ---- coeusguo/ceit parity ------------------------------------------------------------------------------
# A restatement of coeusguo/ceit's ceit_model.py forward (eval mode), on a state dict in its layout.

def coeusguo_state_dict(embed_dim=192, depth=12, num_classes=10, grid=14, seed=0):
    """Random weights under coeusguo/ceit's names and shapes (ceit_*_patch16_224: I2T with 64 channels,
    mlp_ratio 4, qkv bias), scaled so that every layer changes its input noticeably."""
    C, hidden = embed_dim, 4 * embed_dim
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def dense(name, shape):  # weight ~ 1 / sqrt(fan_in), bias small
        fan_in = torch.Size(shape[1:]).numel()
        sd[name + '.weight'] = torch.randn(shape, generator=g) / fan_in ** 0.5
        sd[name + '.bias'] = torch.randn(shape[0], generator=g) * 0.1

    def affine(name, n):  # LayerNorm / BatchNorm scale and shift
        sd[name + '.weight'] = 1 + torch.randn(n, generator=g) * 0.1
        sd[name + '.bias'] = torch.randn(n, generator=g) * 0.1

    def batchnorm(name, n):
        affine(name, n)
        sd[name + '.running_mean'] = torch.randn(n, generator=g) * 0.1
        sd[name + '.running_var'] = torch.rand(n, generator=g) + 0.5
        sd[name + '.num_batches_tracked'] = torch.tensor(1000)

    sd['i2t.backbone.conv.weight'] = torch.randn(64, 3, 7, 7, generator=g) / (3 * 49) ** 0.5
    batchnorm('i2t.backbone.bn', 64)
    dense('i2t.proj', (C, 64, 4, 4))
    sd['cls_token'] = torch.randn(1, 1, C, generator=g) * 0.1
    sd['pos_embed'] = torch.randn(1, 1 + grid * grid, C, generator=g) * 0.1
    for i in range(depth):
        b = f'blocks.{i}.'
        affine(b + 'norm1', C)
        dense(b + 'attn.qkv', (3 * C, C))
        dense(b + 'attn.proj', (C, C))
        affine(b + 'norm2', C)
        dense(b + 'leff.conv1', (hidden, C, 1, 1))
        batchnorm(b + 'leff.bn1', hidden)
        dense(b + 'leff.conv2', (hidden, 1, 3, 3))
        batchnorm(b + 'leff.bn2', hidden)
        dense(b + 'leff.conv3', (C, hidden, 1, 1))
        batchnorm(b + 'leff.bn3', C)
    affine('lca.norm1', C)
    dense('lca.attn.qkv', (3 * C, C))
    dense('lca.attn.proj', (C, C))
    affine('lca.norm2', C)
    dense('lca.feedforward.fc1', (hidden, C))
    dense('lca.feedforward.fc2', (C, hidden))
    sd['pos_layer_embed'] = torch.randn(1, depth, C, generator=g) * 0.1
    affine('norm', C)
    dense('head', (num_classes, C))
    return sd


def _bn(x, sd, name):
    return F.batch_norm(x, sd[name + '.running_mean'], sd[name + '.running_var'], sd[name + '.weight'],
                        sd[name + '.bias'], training=False, eps=1e-5)


def _ln(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[name + '.weight'], sd[name + '.bias'], eps=1e-6)


def _linear(x, sd, name):
    return F.linear(x, sd[name + '.weight'], sd[name + '.bias'])


def coeusguo_leff(x, sd, name):
    """LocallyEnhancedFeedForward.forward (with_bn=True): square grid, BN last, no activation after it."""
    b, n, k = x.shape
    cls_token, tokens = torch.split(x, [1, n - 1], dim=1)
    side = int(math.sqrt(n - 1))
    y = tokens.reshape(b, side, side, k).permute(0, 3, 1, 2)
    y = F.gelu(_bn(F.conv2d(y, sd[name + '.conv1.weight'], sd[name + '.conv1.bias']), sd, name + '.bn1'))
    w2 = sd[name + '.conv2.weight']
    y = F.gelu(_bn(F.conv2d(y, w2, sd[name + '.conv2.bias'], padding=1, groups=w2.shape[0]), sd, name + '.bn2'))
    y = _bn(F.conv2d(y, sd[name + '.conv3.weight'], sd[name + '.conv3.bias']), sd, name + '.bn3')
    return torch.cat((cls_token, y.flatten(2).permute(0, 2, 1)), dim=1)


def coeusguo_attention(q_in, kv_in, sd, name, num_heads):
    """Attention / AttentionLCA: queries from ``q_in``'s rows, keys and values from ``kv_in``'s."""
    C = kv_in.shape[-1]
    w, bias = sd[name + '.qkv.weight'], sd[name + '.qkv.bias']
    heads = lambda t: t.reshape(t.shape[0], t.shape[1], num_heads, C // num_heads).transpose(1, 2)  # noqa: E731
    q = heads(F.linear(q_in, w[:C], bias[:C]))
    k = heads(F.linear(kv_in, w[C:2 * C], bias[C:2 * C]))
    v = heads(F.linear(kv_in, w[2 * C:], bias[2 * C:]))
    attn = ((q @ k.transpose(-2, -1)) * (C // num_heads) ** -0.5).softmax(dim=-1)
    out = (attn @ v).transpose(1, 2).reshape(q_in.shape[0], q_in.shape[1], C)
    return _linear(out, sd, name + '.proj')


def coeusguo_forward(sd, x, num_heads, pos_embed=None):
    """CeIT.forward_features + head in eval mode: (tokens after the last block, logits). ``pos_embed``
    replaces the checkpoint's for inputs other than 224 x 224 (the official model is built for one grid)."""
    depth = sd['pos_layer_embed'].shape[1]
    y = _bn(F.conv2d(x, sd['i2t.backbone.conv.weight'], stride=2, padding=3), sd, 'i2t.backbone.bn')
    y = F.max_pool2d(y, kernel_size=3, stride=2, padding=1)
    y = F.conv2d(y, sd['i2t.proj.weight'], sd['i2t.proj.bias'], stride=4).flatten(2).transpose(1, 2)
    y = torch.cat((sd['cls_token'].expand(x.shape[0], -1, -1), y), dim=1)
    y = y + (sd['pos_embed'] if pos_embed is None else pos_embed)
    class_tokens = []
    for i in range(depth):
        b = f'blocks.{i}.'
        h = _ln(y, sd, b + 'norm1')
        y = y + coeusguo_attention(h, h, sd, b + 'attn', num_heads)
        y = y + coeusguo_leff(_ln(y, sd, b + 'norm2'), sd, b + 'leff')
        class_tokens.append(y[:, 0])
    tokens = y
    all_cls = torch.stack(class_tokens, dim=1) + sd['pos_layer_embed']
    h = _ln(all_cls, sd, 'lca.norm1')
    z = all_cls[:, -1:] + coeusguo_attention(h[:, -1:], h, sd, 'lca.attn', num_heads)
    h = _ln(z, sd, 'lca.norm2')
    z = z + _linear(F.gelu(_linear(h, sd, 'lca.feedforward.fc1')), sd, 'lca.feedforward.fc2')
    logits = _linear(_ln(z, sd, 'norm').view(x.shape[0], -1), sd, 'head')
    return tokens, logits


def _config_backbone(config, checkpoint):
    from vitdense.registry import MODELS
    backbone = copy.deepcopy(ceit_config(config).model.backbone)
    backbone.init_cfg.checkpoint = checkpoint
    backbone.drop_path_rate = 0.0
    model = MODELS.build(backbone)
    model.init_weights()
    return model.eval()


@pytest.mark.parametrize('config, size', [
    ('configs/ceit/mask-rcnn_ceit-t-p16_fpn_1x_coco.py', 224),  # the pretraining size
    ('configs/ceit/upernet_ceit-t-p16_4xb4-160k_ade20k-512x512.py', 512),  # its 512 x 512 crops
])
def test_config_backbone_computes_the_official_network(tmp_path, config, size):
    """A CeiT-T config's backbone, given random weights in coeusguo/ceit's layout through its init_cfg,
    yields the tokens of coeusguo/ceit's forward (class token and every patch token after the last block).
    At 512 the restatement takes the position embedding vitdense resamples at load (timm's bicubic
    resample_abs_pos_embed, 14x14 -> 32x32); everything else is coeusguo/ceit's. Its LeFF reshapes to a
    square grid, so the inputs are square (non-square grids: test_leff_on_a_non_square_grid)."""
    sd = coeusguo_state_dict(seed=3)
    path = str(tmp_path / 'ceit_tiny_patch16_224.pth')
    torch.save({'model': sd}, path)
    model = _config_backbone(config, path)
    grid = size // 16
    assert model.pos_grid == (grid, grid)
    pos_embed = resample_abs_pos_embed(sd['pos_embed'], new_size=[grid, grid], num_prefix_tokens=1)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        tokens, hw = model.forward_tokens(x)
        ref, _ = coeusguo_forward(sd, x, num_heads=3, pos_embed=pos_embed)
    assert hw == (grid, grid) and tokens.shape == ref.shape == (1, 1 + grid * grid, 192)
    assert rel_err(tokens[:, 1:], ref[:, 1:]) <= 1e-5  # the patch-token map the pyramid rescales
    assert rel_err(tokens[:, 0], ref[:, 0]) <= 1e-5


def test_classifier_computes_the_official_logits(tmp_path):
    """CeiTClassifier (CeiT-T) with coeusguo/ceit weights through init_cfg: coeusguo/ceit's logits at 224."""
    sd = coeusguo_state_dict(num_classes=10, seed=5)
    path = str(tmp_path / 'ceit_tiny_patch16_224.pth')
    torch.save({'model': sd}, path)
    model = CeiTClassifier('tiny', num_classes=10, drop_path_rate=0.0,
                           init_cfg=dict(type='Pretrained', checkpoint=path))
    model.init_weights()
    model.eval()
    assert torch.equal(model.pos_layer_embed, sd['pos_layer_embed'])
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        logits = model(x)
        _, ref = coeusguo_forward(sd, x, num_heads=3)
    assert logits.shape == ref.shape == (2, 10)
    assert rel_err(logits, ref) <= 1e-5


def test_official_weights_into_the_gelu_variant_are_refused(tmp_path):
    """leff_final_act=True is not the network coeusguo/ceit weights compute: one line naming the option."""
    from vitdense.runtime.errors import describe_error
    from vitdense.checkpoint import CheckpointError
    path = str(tmp_path / 'ceit_tiny_patch16_224.pth')
    torch.save({'model': coeusguo_state_dict(depth=4)}, path)
    for model in (CeiT(TINY4, leff_final_act=True, init_cfg=dict(type='Pretrained', checkpoint=path)),
                  CeiTClassifier(TINY4, num_classes=10, leff_final_act=True,
                                 init_cfg=dict(type='Pretrained', checkpoint=path))):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(CheckpointError, match=r'has leff_final_act=True; set leff_final_act=False') as err:
            model.init_weights()
        assert describe_error(err.value) == str(err.value) and '\n' not in str(err.value)
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # nothing loaded
    # the official form loads the same file
    report = load_pretrained(CeiT(TINY4), path)
    assert 'coeusguo/ceit layout remapped' in report.notes


def test_layer_class_token_embedding_starts_at_zero():
    """coeusguo/ceit: pos_layer_embed = zeros and never re-initialised (only pos_embed and cls_token are
    truncated-normal)."""
    torch.manual_seed(0)
    model = CeiTClassifier(TINY4, num_classes=10)
    assert model.pos_layer_embed.shape == (1, 4, 192) and torch.equal(model.pos_layer_embed, torch.zeros(1, 4, 192))
    assert model.pos_layer_embed.requires_grad
    assert 0.01 < model.pos_embed.std().item() < 0.03 and 0.01 < model.cls_token.std().item() < 0.03


CEIT_MODEL_CONFIGS = sorted(glob.glob(os.path.join(REPO, 'configs', 'ceit', '*.py'))
                            + glob.glob(os.path.join(REPO, 'configs', '_base_', 'models', '*ceit*.py')))


def test_every_ceit_config_builds_the_official_leff():
    """Every CeiT config's backbone (detection, segmentation, classification, and the model bases) has 12
    LeFFs, and they compute coeusguo/ceit's LeFF (BN last, no GELU): the first one, given official-layout
    tensors, against the restatement."""
    from vitdense.registry import MODELS
    official_to_vitdense = {'conv1': 'up_proj', 'bn1': 'up_norm', 'conv2': 'dw_conv', 'bn2': 'dw_norm',
                            'conv3': 'down_proj', 'bn3': 'down_norm'}
    assert len(CEIT_MODEL_CONFIGS) == 18  # 11 + Cascade (4) + Semantic FPN (2 leaves, 1 base)
    for path in CEIT_MODEL_CONFIGS:
        with torch.device('meta'):
            backbone = MODELS.build(copy.deepcopy(ceit_config(path).model.backbone))
        leffs = [m for m in backbone.modules() if isinstance(m, LocallyEnhancedFeedForward)]
        assert len(leffs) == 12 and not any(m.final_act for m in leffs), path
        dim = leffs[0].down_proj.out_channels
        official = {k: v for k, v in coeusguo_state_dict(embed_dim=dim, depth=1).items()
                    if k.startswith('blocks.0.leff.')}
        renamed = {}
        for k, v in official.items():
            layer, param = k[len('blocks.0.leff.'):].split('.')
            renamed[f'{official_to_vitdense[layer]}.{param}'] = v
        leff = leffs[0].to_empty(device='cpu').eval()
        leff.load_state_dict(renamed)
        x = torch.randn(2, 1 + 36, dim)
        with torch.no_grad():
            assert rel_err(leff(x, (6, 6)), coeusguo_leff(x, official, 'blocks.0.leff')) <= 1e-6, path
