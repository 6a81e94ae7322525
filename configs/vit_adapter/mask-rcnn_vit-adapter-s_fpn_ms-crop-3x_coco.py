# ViT-Adapter-S (DeiT-S weights) Mask R-CNN 3x + multi-scale training (with the repo's final 1024 crop), the
# paper's recipe. Paper / czczup/ViT-Adapter: 48.2 box AP / 42.8 mask AP, 48M params.
_base_ = [
    '../_base_/models/mask-rcnn_vit-adapter-s_fpn.py', '../_base_/datasets/coco_instance_ms-crop-1024.py',
    '../_base_/schedules/det_3x.py', '../_base_/optimizers/adamw_vit-adapter_det.py',
    '../_base_/default_runtime_det.py'
]
