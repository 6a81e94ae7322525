# Sequencer2D-S Mask R-CNN on the bundled real mini COCO, from scratch (start from ImageNet weights with
# --cfg-options model.backbone.init_cfg.checkpoint=PATH and a lower lr).
_base_ = [
    '../_base_/models/mask-rcnn_sequencer2d-s_fpn.py', '../_base_/datasets/coco_mini.py',
    '../_base_/schedules/mini_det.py', '../_base_/optimizers/adamw_swin-det.py'
]
model = dict(backbone=dict(init_cfg=dict(checkpoint=None)))
optim_wrapper = dict(optimizer=dict(lr=3e-4))
