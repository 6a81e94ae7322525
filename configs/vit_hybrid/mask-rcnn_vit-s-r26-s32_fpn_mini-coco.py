# R26+ViT-S/32 hybrid (the smallest one with a ResNet pyramid) Mask R-CNN on the bundled real mini COCO, from
# scratch: a milder layer decay (0.9) than the pretrained recipe's, global attention with the class token.
_base_ = [
    '../_base_/models/mask-rcnn_vit-b-r50_fpn.py', '../_base_/datasets/coco_mini.py',
    '../_base_/schedules/mini_det.py', '../_base_/optimizers/adamw_vitdet-layer-decay-0.7_det.py'
]
model = dict(backbone=dict(arch='vit_small_r26_s32', with_cls_token=True, window_size=0, global_attn_indexes=(),
                           init_cfg=dict(checkpoint=None)),
             neck=dict(in_channels=[256, 512, 1024, 384]))
optim_wrapper = dict(optimizer=dict(lr=3e-4), paramwise_cfg=dict(decay_rate=0.9))
