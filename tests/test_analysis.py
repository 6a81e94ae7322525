"""vitdense.analysis: exact FLOP counts of single ops, and params / FLOPs of real configs vs the published ones.

Convention under test: one multiply-add = one FLOP (the papers' / fvcore's), so a matmul of (m, k) @ (k, n)
counts m * k * n, and attention over N tokens of head size d counts 2 * B * heads * N^2 * d (q @ k^T, attn @ v).
"""
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vitdense import analysis
from vitdense.analysis import flops, references, speed
from vitdense.analysis.published import published_for
from vitdense.runtime.config import build_model
from vitdense.runtime.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICES = ['cpu', 'meta']  # real CPU kernels (fused attention, oneDNN LSTM) and the meta decompositions


def config(rel):
    return load_config(os.path.join(REPO, 'configs', rel))


class TinyAttention(nn.Module):
    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


def count(fn, *args):
    with torch.no_grad(), flops.FlopCounter() as counter:
        fn(*args)
    return counter


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('with_mask', [False, True])
def test_sdpa_attention_counted_exactly(device, with_mask):
    B, N, C, heads = 2, 50, 32, 4
    model = TinyAttention(C, heads).to(device).eval()
    x = torch.randn(B, N, C, device=device)
    mask = torch.zeros(B, heads, N, N, device=device) if with_mask else None
    counter = count(model, x, mask)
    linear = B * N * C * 3 * C + B * N * C * C
    attention = 2 * B * heads * N * N * (C // heads)
    assert counter.total == linear + attention
    assert counter.by_op['addmm'] == linear
    assert sum(n for op, n in counter.by_op.items() if op != 'addmm') == attention


@pytest.mark.parametrize('device', DEVICES)
def test_matmul_einsum_conv_counted_exactly(device):
    a = torch.randn(2, 3, 7, 5, device=device)
    b = torch.randn(2, 3, 5, 11, device=device)
    assert count(torch.matmul, a, b).total == 2 * 3 * 7 * 5 * 11
    assert count(lambda: torch.einsum('bhnd,bhdm->bhnm', a, b)).total == 2 * 3 * 7 * 5 * 11
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2).to(device)
    x = torch.randn(1, 8, 20, 30, device=device)
    assert count(conv, x).total == 16 * (8 // 2) * 9 * 10 * 15


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('rnn, gates', [(nn.LSTM, 4), (nn.GRU, 3)])
def test_rnn_gates_counted_exactly(device, rnn, gates):
    """On meta the RNN call is answered by shape (no per-step decomposition): same count, same shapes."""
    T, B, inp, hidden = 10, 3, 16, 8
    model = rnn(inp, hidden, num_layers=2, batch_first=True, bidirectional=True).eval()
    x = torch.randn(B, T, inp)
    with torch.no_grad():
        expected_shapes = [t.shape for t in torch.utils._pytree.tree_leaves(model(x))]
    counter = count(model.to(device), x.to(device))
    layer1 = gates * hidden * inp + gates * hidden * hidden  # per token and direction: w_ih and w_hh
    layer2 = gates * hidden * (2 * hidden) + gates * hidden * hidden
    assert counter.total == T * B * 2 * (layer1 + layer2)
    with torch.no_grad():
        assert [t.shape for t in torch.utils._pytree.tree_leaves(model(x.to(device)))] == expected_shapes


@pytest.mark.parametrize('device', DEVICES)
def test_sort_topk_cdist_counted(device):
    x = torch.randn(3, 10, 16, device=device)
    assert count(torch.sort, x, 1).total == 3 * 16 * 10 * 4         # rows * n * ceil(log2 n)
    assert count(lambda: x.topk(4, dim=-1)).total == 3 * 10 * 16 * 2  # rows * n * log2 k
    assert count(torch.cdist, x, x[:, :6]).total == 3 * 10 * 6 * 16


def test_swin_and_convnext_backbones_at_224_match_published():
    """Swin-T 4.5 GFLOPs, ConvNeXt-T 4.5 GFLOPs at 224x224 (papers; multiply-adds)."""
    swin = flops.complexity(config('swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'), (224, 224),
                               backbone_only=True)
    assert swin.device == 'meta' and not swin.note
    assert abs(swin.flops / 1e9 - 4.5) / 4.5 < 0.05
    assert swin.by_op['bmm'] > 0  # the window attention matmuls are in the total
    convnext = flops.complexity(config('convnext/mask-rcnn_convnext-t-p4-w7_fpn_1x_coco.py'), (224, 224),
                                   backbone_only=True)
    assert abs(convnext.flops / 1e9 - 4.5) / 4.5 < 0.05


TINY_SWIN = dict(embed_dim=16, depths=(2, 1, 2, 1), num_heads=(1, 2, 2, 4))
TINY_CONVNEXT = dict(depths=(1, 1, 2, 1), dims=(8, 16, 32, 64))


def test_meta_count_equals_real_cpu_count():
    cfg = config('swin/upernet_swin-t-p4-w7_mini-ade20k.py')
    cfg.model.backbone.arch = TINY_SWIN
    backbone = build_model(cfg, backbone_only=True)
    real = flops._count_forward(backbone, 'mmseg', (97, 66), True, 'cpu')
    meta = flops._count_forward(backbone, 'mmseg', (97, 66), True, 'meta')
    assert real.total == meta.total > 0
    # on a CPU Swin's window attention is two bmm calls (SDPA's CPU kernel, which torch's counter misses, is
    # counted by test_sdpa_attention_counted_exactly); on meta SDPA, which reaches bmm as well. The linears are
    # oneDNN's _linear_pointwise on a CPU (vitdense.models.cpu_layers), addmm / mm on meta: the same GEMMs
    def linears_merged(by_op):
        merged = {op: n for op, n in by_op.items() if op not in ('addmm', 'mm', '_linear_pointwise')}
        return merged, sum(n for op, n in by_op.items() if op in ('addmm', 'mm', '_linear_pointwise'))
    assert real.by_op['_linear_pointwise'] > 0 and 'addmm' in meta.by_op
    assert linears_merged(real.by_op) == linears_merged(meta.by_op) and real.by_op['bmm'] > 0
    lazy = build_model(cfg, backbone_only=True, weights_on_meta=True)
    assert any(p.is_meta for p in lazy.parameters())
    assert flops.count_params(lazy) == flops.count_params(backbone)


@pytest.mark.parametrize('name', [
    'swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', 'convnext/mask-rcnn_convnext-t-p4-w7_fpn_ms-crop-3x_coco.py',
    'swin/upernet_swin-t-p4-w7_4xb4-160k_ade20k-512x512.py', 'convnext/upernet_convnext-t_4xb4-160k_ade20k-512x512.py',
    'convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_ms-crop-3x_coco.py'])
def test_params_within_2_percent_of_published(name):
    result = flops.complexity(config(name), flops=False)
    published = published_for(name)
    assert abs(result.params / 1e6 - published.params_m) / published.params_m < 0.02


@pytest.mark.parametrize('name', ['swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
                                  'swin/cascade-mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py',
                                  'convnext/upernet_convnext-t_4xb4-160k_ade20k-512x512.py'])
def test_full_model_flops_within_2_percent_of_published(name):
    """Mask R-CNN Swin-T 267 G and Cascade Mask R-CNN Swin-T 745 G at 1280x800, UperNet ConvNeXt-T 939 G at
    512x2048, counted on meta."""
    cfg = config(name)
    result = flops.complexity(cfg)
    published = published_for(name)
    assert result.shape == flops.STANDARD_SHAPES[cfg.default_scope]
    assert result.device == 'meta' and not result.note
    assert abs(result.flops / 1e9 - published.gflops) / published.gflops < 0.02
    modules = dict(result.by_module)
    root = next(iter(modules))
    assert modules[root] == result.flops and any('.backbone' in m for m in modules)


def test_detector_patches_are_restored():
    cfg = config('swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py')
    model = build_model(cfg, weights_on_meta=True)
    with flops.detector_counting_patches(model):
        assert 'predict' in model.rpn_head.__dict__
    assert 'predict' not in model.rpn_head.__dict__
    assert all('forward' not in m.__dict__ for m in model.modules())


def test_cascade_mask_heads_counted_on_100_rois():
    """The published Cascade FLOPs' convention: each stage's box head on every proposal, its mask head on 100."""
    cfg = config('swin/cascade-mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py')
    table = dict(flops.complexity(cfg, shape=(64, 96), depth=3).by_module)
    box_per_roi = 4 * 256 * 256 * 9 * 7 * 7 + 256 * 7 * 7 * 1024 + 1024 * (81 + 4 * 80)  # 4 convs, fc, cls + reg
    mask_per_roi = 4 * 256 * 256 * 9 * 14 * 14 + 256 * 256 * 4 * 14 * 14 + 256 * 80 * 28 * 28  # convs, deconv, logits
    for stage in range(3):
        assert table[f'CascadeRCNN.roi_head.bbox_head.{stage}'] == 1000 * box_per_roi
        assert table[f'CascadeRCNN.roi_head.mask_head.{stage}'] == 100 * mask_per_roi
    model = build_model(cfg, weights_on_meta=True)
    with flops.detector_counting_patches(model):
        assert 'forward' in model.roi_head.__dict__
    assert 'forward' not in model.roi_head.__dict__


def test_meta_failure_falls_back_to_cpu(monkeypatch):
    """A backbone that reads a tensor value in forward cannot run on meta: counted on the CPU, same total."""
    from vitdense.models.backbones.convnext import ConvNeXt
    cfg = config('convnext/upernet_convnext-t_mini-ade20k.py')
    cfg.model.backbone.arch = TINY_CONVNEXT
    expected = flops.complexity(cfg, (64, 64), backbone_only=True)
    original = ConvNeXt.forward

    def reads_values(self, x):
        float(x.sum())  # impossible on the meta device
        return original(self, x)

    monkeypatch.setattr(ConvNeXt, 'forward', reads_values)
    result = flops.complexity(cfg, (64, 64), backbone_only=True)
    assert result.device == 'cpu' and 'meta device failed' in result.note
    assert result.flops == expected.flops > 0


def test_reference_lookup():
    cfg = config('swin/upernet_swin-t-p4-w7_mini-ade20k.py')
    cfg.model.backbone.arch = TINY_SWIN
    backbone = build_model(cfg, backbone_only=True)
    # (timm's Swin shrinks a window to a smaller feature map: at 224 x 224 every stage keeps the 7 x 7 window)
    built = references.reference_backbones(backbone, (224, 224))
    assert [d.split("'")[0] for d, _ in built] == ['mmdet', 'timm']
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ours = backbone(x)
        for description, reference in built:
            assert [tuple(t.shape) for t in reference(x)] == [tuple(o.shape) for o in ours]  # NCHW, same levels
    # the same network: mmdet's Swin has every parameter; timm's features lack only the 4 output norms
    output_norms = sum(2 * c for c in backbone.num_features)
    assert flops.count_params(built[0][1]) == flops.count_params(backbone)
    assert flops.count_params(built[1][1]) == flops.count_params(backbone) - output_norms
    with pytest.raises(ValueError, match='no reference implementation registered for Linear'):
        references.reference_backbones(nn.Linear(2, 2))


def test_reference_lookup_is_by_class_not_by_class_name():
    """A subclass (another network) and another library's class of the same name get no reference."""
    from mmdet.models.backbones import SwinTransformer as MMDetSwinTransformer
    from vitdense.models.backbones import BOATSwin
    for other in (BOATSwin(arch=TINY_SWIN), MMDetSwinTransformer(embed_dims=16, depths=(2, 1, 2, 1),
                                                                   num_heads=(1, 2, 2, 4))):
        with pytest.raises(ValueError, match=f'no reference implementation registered for {type(other).__name__}'):
            references.reference_backbones(other)


def test_benchmark_helpers_parse_sizes_and_time_one_call():
    import argparse
    assert analysis.parse_size('800x1216') == (800, 1216) and analysis.parse_size('512X512') == (512, 512)
    for bad in ('800', '800x', 'axb', '1x2x3'):
        with pytest.raises(argparse.ArgumentTypeError, match=f"size '{bad}' is not HxW"):
            analysis.parse_size(bad)
    calls = []
    wall, cpu = speed.timed_call(lambda x: calls.append(x.sum().item()), torch.ones(3))
    assert calls == [3.0] and wall >= 0.0 and cpu >= 0.0


def test_deformable_attention_counted_on_meta_as_on_cpu_plus_its_sampling():
    """mmcv's MultiScaleDeformableAttention cannot run on the meta device; the counting patch answers it by shape:
    the same linears as a real CPU run (which counts no grid_sample), plus 5 multiply-adds per sampled point and
    channel. A narrow ViT-Adapter on a 64 x 96 image: 2 injectors (24 ViT queries, 3 levels) and 4 extractors (the
    last interaction's two extra; 96 + 24 + 6 spatial queries, 1 level), 3 heads of 32 channels, 4 points."""
    from vitdense.analysis.flops import FlopCounter, backbone_flops
    from vitdense.models.backbones import ViTAdapter
    model = ViTAdapter('deit_small_patch16_224', img_size=64, interaction_indexes=[[0, 0], [1, 1]], conv_inplane=16,
                       deform_num_heads=3, model_kwargs=dict(depth=2, embed_dim=96, num_heads=3,
                                                             class_token=False)).eval()
    with torch.no_grad(), FlopCounter() as on_cpu:
        model(torch.zeros(1, 3, 64, 96))
    sampled = 2 * (24 * 3 * 3 * 4 * 32) + 4 * ((96 + 24 + 6) * 3 * 1 * 4 * 32)
    assert backbone_flops(model, (64, 96)) - on_cpu.total == 5 * sampled
