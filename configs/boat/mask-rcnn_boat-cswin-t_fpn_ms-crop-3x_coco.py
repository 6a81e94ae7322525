# BOAT-CSWin-T Mask R-CNN 3x, multi-scale + crop, CSWin's detection recipe.
_base_ = [
    '../_base_/models/mask-rcnn_boat-cswin-t_fpn.py', '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/det_3x.py', '../_base_/optimizers/adamw_swin-det.py', '../_base_/default_runtime_det.py'
]
