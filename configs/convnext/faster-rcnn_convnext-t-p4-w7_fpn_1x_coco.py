# ConvNeXt-T Faster R-CNN 1x, boxes only: the ConvNeXt-T Mask R-CNN recipe (AdamW 1e-4, layer decay 0.95,
# drop path 0.4) without the mask branch. No published number for this recipe.
_base_ = [
    '../_base_/models/faster-rcnn_convnext-t_fpn.py', '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/det_1x.py', '../_base_/optimizers/adamw_layer-decay_det.py',
    '../_base_/default_runtime_det.py'
]
