# DINOv2 ViT-S/14 Mask R-CNN 1x with ViTDet's recipe: windows 14 + global blocks 2, 5, 8, 11, drop path 0.1,
# AdamW lr 1e-4, wd 0.1, layer-wise lr decay 0.7 (ViTDet, ViT-B). No published number for this exact recipe.
_base_ = [
    '../_base_/models/mask-rcnn_dinov2-s_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/det_1x.py', '../_base_/optimizers/adamw_vitdet-layer-decay-0.7_det.py',
    '../_base_/default_runtime_det.py'
]
