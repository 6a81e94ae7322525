# BOAT-Swin-T Mask R-CNN 1x with Swin-T's recipe (AdamW 1e-4, wd 0.05, drop path 0.1); no published number.
_base_ = [
    '../_base_/models/mask-rcnn_boat-swin-t_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/det_1x.py', '../_base_/optimizers/adamw_swin-det.py', '../_base_/default_runtime_det.py'
]
