# Swin-T RetinaNet 1x, boxes only. The optimizer is vitdense's choice: Swin's AdamW detection recipe (lr 1e-4,
# wd 0.05) rather than the SGD of mmdet's Swin RetinaNet; drop path 0.1 as for Mask R-CNN 1x.
_base_ = [
    '../_base_/models/retinanet_swin-t_fpn.py', '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/det_1x.py', '../_base_/optimizers/adamw_swin-det.py', '../_base_/default_runtime_det.py'
]
