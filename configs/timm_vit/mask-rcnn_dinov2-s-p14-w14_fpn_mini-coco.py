# DINOv2 ViT-S/14 Mask R-CNN on the bundled real mini COCO, from scratch: a milder layer decay (0.9) than
# ViTDet's 0.7, which is meant for pretrained blocks (as the ViT-S mini config).
_base_ = [
    '../_base_/models/mask-rcnn_dinov2-s_fpn.py', '../_base_/datasets/coco_mini.py',
    '../_base_/schedules/mini_det.py', '../_base_/optimizers/adamw_vitdet-layer-decay-0.7_det.py'
]
model = dict(backbone=dict(init_cfg=dict(checkpoint=None)))
optim_wrapper = dict(optimizer=dict(lr=3e-4), paramwise_cfg=dict(decay_rate=0.9))
