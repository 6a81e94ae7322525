# ViT-Adapter-S Mask R-CNN on the bundled real mini COCO, from scratch (ViT and adapter at their own
# initialisation), the paper's detection recipe with a higher lr for the 60 iterations.
_base_ = [
    '../_base_/models/mask-rcnn_vit-adapter-s_fpn.py', '../_base_/datasets/coco_mini.py',
    '../_base_/schedules/mini_det.py', '../_base_/optimizers/adamw_vit-adapter_det.py'
]
model = dict(backbone=dict(init_cfg=dict(checkpoint=None)))
optim_wrapper = dict(optimizer=dict(lr=3e-4))
