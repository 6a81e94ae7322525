# ViT-S/16 (DeiT-S weights) Mask R-CNN 1x: ViTDet-style windowed + 4 global blocks, simple feature pyramid
# in the backbone, then mmdet's FPN; ViTDet's layer decay 0.7. No published number for this exact recipe.
_base_ = [
    '../_base_/models/mask-rcnn_vit-s_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/det_1x.py', '../_base_/optimizers/adamw_vitdet-layer-decay-0.7_det.py',
    '../_base_/default_runtime_det.py'
]
