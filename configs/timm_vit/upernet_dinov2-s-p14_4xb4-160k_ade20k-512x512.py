# DINOv2 ViT-S/14 UperNet ADE20K 160k with ViT-Adapter's UperNet recipe for ViT-S (Chen et al. 2023): AdamW lr
# 6e-5, wd 0.01, layer-wise lr decay 0.95, drop path 0.1, sliding-window test 512 / 341; global attention. No
# published number for this exact recipe.
_base_ = [
    '../_base_/models/upernet_dinov2-s.py', '../_base_/datasets/ade20k.py', '../_base_/schedules/seg_160k.py',
    '../_base_/optimizers/adamw_vit-adapter-layer-decay-0.95_seg.py', '../_base_/default_runtime_seg.py'
]
model = dict(test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
