# R50+ViT-B/16 hybrid Mask R-CNN 3x, multi-scale + crop (the Swin / ViT-Adapter 3x augmentation); layer decay
# 0.76 over the hybrid's 18 depths (see the 1x config).
_base_ = [
    '../_base_/models/mask-rcnn_vit-b-r50_fpn.py', '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/det_3x.py', '../_base_/optimizers/adamw_vitdet-layer-decay-0.7_det.py',
    '../_base_/default_runtime_det.py'
]
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.76))
