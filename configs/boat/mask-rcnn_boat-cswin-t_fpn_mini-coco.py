# BOAT-CSWin-T (pytorch-boat layout, as every BOAT config) Mask R-CNN on the bundled real mini COCO, from scratch.
_base_ = [
    '../_base_/models/mask-rcnn_boat-cswin-t_fpn.py', '../_base_/datasets/coco_mini.py',
    '../_base_/schedules/mini_det.py', '../_base_/optimizers/adamw_swin-det.py'
]
model = dict(backbone=dict(layout='pytorch-boat', init_cfg=dict(checkpoint=None)))
optim_wrapper = dict(optimizer=dict(lr=3e-4))
