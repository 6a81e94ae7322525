# ConvNeXt-T Mask R-CNN 1x (no official 1x number; the 3x recipe's optimizer and drop path).
_base_ = [
    '../_base_/models/mask-rcnn_convnext-t_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/det_1x.py', '../_base_/optimizers/adamw_layer-decay_det.py',
    '../_base_/default_runtime_det.py'
]
