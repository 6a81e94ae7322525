# ConvNeXt-T Mask R-CNN on the bundled real mini COCO, from scratch.
_base_ = [
    '../_base_/models/mask-rcnn_convnext-t_fpn.py', '../_base_/datasets/coco_mini.py',
    '../_base_/schedules/mini_det.py', '../_base_/optimizers/adamw_layer-decay_det.py'
]
model = dict(backbone=dict(drop_path_rate=0.1, init_cfg=dict(checkpoint=None)))
optim_wrapper = dict(optimizer=dict(lr=3e-4))
