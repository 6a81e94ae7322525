# BOAT-Swin-T Mask R-CNN 3x, multi-scale + crop, Swin-T's 3x recipe (drop path 0.2).
_base_ = [
    '../_base_/models/mask-rcnn_boat-swin-t_fpn.py', '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/det_3x.py', '../_base_/optimizers/adamw_swin-det.py', '../_base_/default_runtime_det.py'
]
model = dict(backbone=dict(drop_path_rate=0.2))
