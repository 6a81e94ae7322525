# ViT-S/16 Mask R-CNN 3x, multi-scale + crop (the Swin / ViT-Adapter 3x augmentation); ViTDet layer decay 0.7.
_base_ = [
    '../_base_/models/mask-rcnn_vit-s_fpn.py', '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/det_3x.py', '../_base_/optimizers/adamw_vitdet-layer-decay-0.7_det.py',
    '../_base_/default_runtime_det.py'
]
