# ConvNeXt-T Mask R-CNN 3x (published: 46.2 box / 41.7 mask AP, 48M params, 262 GFLOPs at 1280x800).
_base_ = [
    '../_base_/models/mask-rcnn_convnext-t_fpn.py', '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/det_3x.py', '../_base_/optimizers/adamw_layer-decay_det.py',
    '../_base_/default_runtime_det.py'
]
