# Swin-T Faster R-CNN 1x, boxes only: the Swin-T Mask R-CNN 1x recipe (AdamW 1e-4, wd 0.05, drop path 0.1)
# without the mask branch. No published number for this recipe.
_base_ = [
    '../_base_/models/faster-rcnn_swin-t_fpn.py', '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/det_1x.py', '../_base_/optimizers/adamw_swin-det.py', '../_base_/default_runtime_det.py'
]
