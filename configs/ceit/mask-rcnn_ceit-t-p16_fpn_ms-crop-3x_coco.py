# CeiT-T Mask R-CNN 3x, multi-scale + crop; layer-wise decay 0.95.
_base_ = [
    '../_base_/models/mask-rcnn_ceit-t_fpn.py', '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/det_3x.py', '../_base_/optimizers/adamw_layer-decay_det.py',
    '../_base_/default_runtime_det.py'
]
