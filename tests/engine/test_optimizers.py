import pytest
import torch.nn as nn
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import vitdense.engine  # noqa: F401
from vitdense.models.backbones import ConvNeXt, SwinTransformer


class Detector(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.neck = nn.Conv2d(768, 8, 1)


def groups_by_name(optim_wrapper):
    out = {}
    for group in optim_wrapper.optimizer.param_groups:
        for name in group['param_names']:
            out[name] = group
    return out


def build(model, decay_rate, decay_type, lr=1e-4, wd=0.05):
    init_default_scope('mmdet')
    return build_optim_wrapper(model, dict(
        type='OptimWrapper', constructor='vitdense.LayerDecayOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=lr, weight_decay=wd),
        paramwise_cfg=dict(decay_rate=decay_rate, decay_type=decay_type)))


def test_convnext_detection_recipe_layer_wise_095():
    groups = groups_by_name(build(Detector(ConvNeXt(arch='tiny')), 0.95, 'layer_wise'))
    # 8 depths for ConvNeXt-T: lr = 1e-4 * 0.95 ** (7 - depth)
    assert groups['backbone.stem.0.weight']['lr'] == pytest.approx(1e-4 * 0.95 ** 7)
    assert groups['backbone.stages.2.blocks.4.mlp.fc1.weight']['lr'] == pytest.approx(1e-4 * 0.95 ** 3)
    assert groups['backbone.stages.3.blocks.2.conv_dw.weight']['lr'] == pytest.approx(1e-4 * 0.95)
    assert groups['neck.weight']['lr'] == pytest.approx(1e-4)
    # no weight decay on 1-D parameters (norms, biases, layer scale); full decay on weights
    assert groups['backbone.stages.0.blocks.0.gamma']['weight_decay'] == 0
    assert groups['backbone.stages.0.blocks.0.norm.weight']['weight_decay'] == 0
    assert groups['neck.bias']['weight_decay'] == 0
    assert groups['backbone.stages.0.blocks.0.mlp.fc1.weight']['weight_decay'] == pytest.approx(0.05)


def test_convnext_segmentation_recipe_stage_wise_09():
    groups = groups_by_name(build(Detector(ConvNeXt(arch='tiny')), 0.9, 'stage_wise'))
    assert groups['backbone.stem.0.weight']['lr'] == pytest.approx(1e-4 * 0.9 ** 5)
    assert groups['backbone.stages.1.blocks.0.mlp.fc1.weight']['lr'] == pytest.approx(1e-4 * 0.9 ** 3)
    assert groups['backbone.stages.3.blocks.0.mlp.fc1.weight']['lr'] == pytest.approx(1e-4 * 0.9)


def test_swin_layer_wise_and_no_decay_on_relative_position_tables():
    groups = groups_by_name(build(Detector(SwinTransformer(arch='tiny')), 0.9, 'layer_wise'))
    # 14 depths: patch embed 0, blocks 1..12, rest 13
    assert groups['backbone.patch_embed.proj.weight']['lr'] == pytest.approx(1e-4 * 0.9 ** 13)
    assert groups['backbone.layers.2.blocks.5.attn.qkv.weight']['lr'] == pytest.approx(1e-4 * 0.9 ** 3)
    table = groups['backbone.layers.0.blocks.0.attn.relative_position_bias_table']
    assert table['weight_decay'] == 0
    assert groups['backbone.layers.0.blocks.0.attn.qkv.weight']['weight_decay'] == pytest.approx(0.05)


def test_register_and_class_tokens_get_no_weight_decay():
    """DINOv2-reg4's register tokens are embeddings like the class token: no weight decay, layer-decayed lr."""
    from vitdense.models.backbones import TimmViT
    backbone = TimmViT(model_name='vit_small_patch14_reg4_dinov2', img_size=56,
                       model_kwargs=dict(depth=2, embed_dim=64, num_heads=2))
    groups = groups_by_name(build(Detector(backbone), 0.7, 'layer_wise'))
    for name in ('backbone.vit.reg_token', 'backbone.vit.cls_token', 'backbone.vit.pos_embed'):
        assert groups[name]['weight_decay'] == 0, name
        assert groups[name]['lr'] == pytest.approx(1e-4 * 0.7 ** 3), name  # stem depth 0 of 4
    assert groups['backbone.vit.blocks.0.attn.qkv.weight']['weight_decay'] == pytest.approx(0.05)
