# Swin-T Mask R-CNN 1x (published: 43.7 box / 39.8 mask AP, 48M params, 267 GFLOPs at 1280x800).
_base_ = [
    '../_base_/models/mask-rcnn_swin-t_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/det_1x.py', '../_base_/optimizers/adamw_swin-det.py', '../_base_/default_runtime_det.py'
]
