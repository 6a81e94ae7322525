# ConvNeXt-T RetinaNet 1x, boxes only, with the ConvNeXt-T Mask R-CNN optimizer (AdamW 1e-4, layer decay 0.95;
# vitdense's choice, no published RetinaNet recipe) and drop path 0.4.
_base_ = [
    '../_base_/models/retinanet_convnext-t_fpn.py', '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/det_1x.py', '../_base_/optimizers/adamw_layer-decay_det.py',
    '../_base_/default_runtime_det.py'
]
