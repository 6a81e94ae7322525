# BOAT-CSWin-T Mask R-CNN 1x with CSWin's detection recipe (AdamW 1e-4, wd 0.05; drop path T 0.2, S 0.3,
# B 0.4); no published number.
_base_ = [
    '../_base_/models/mask-rcnn_boat-cswin-t_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/det_1x.py', '../_base_/optimizers/adamw_swin-det.py', '../_base_/default_runtime_det.py'
]
