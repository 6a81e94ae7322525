# ViT-Adapter-S (DeiT-S weights) Mask R-CNN 1x, the paper's recipe: drop path 0.2, AdamW 1e-4, wd 0.05, no layer
# decay. Paper (Table 1): 44.7 box AP / 39.9 mask AP, 48M params.
_base_ = [
    '../_base_/models/mask-rcnn_vit-adapter-s_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/det_1x.py', '../_base_/optimizers/adamw_vit-adapter_det.py',
    '../_base_/default_runtime_det.py'
]
