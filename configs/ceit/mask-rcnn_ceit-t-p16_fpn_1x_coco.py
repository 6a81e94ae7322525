# CeiT-T Mask R-CNN 1x: simple feature pyramid in the backbone, then mmdet's FPN. CeiT has no published
# detection recipe; this uses the ViT-Adapter / ConvNeXt-style AdamW lr 1e-4, wd 0.05 with layer-wise decay
# 0.95 (num_depths = 12 + 2).
_base_ = [
    '../_base_/models/mask-rcnn_ceit-t_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/det_1x.py', '../_base_/optimizers/adamw_layer-decay_det.py',
    '../_base_/default_runtime_det.py'
]
