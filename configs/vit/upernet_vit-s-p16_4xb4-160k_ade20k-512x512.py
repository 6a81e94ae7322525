# ViT-S/16 (DeiT-S weights) UperNet ADE20K 160k with ViT-Adapter's recipe (lr 6e-5, wd 0.01, layer decay
# 0.95, sliding-window test); global attention, position embedding learned at the 512x512 grid.
_base_ = [
    '../_base_/models/upernet_vit-s.py', '../_base_/datasets/ade20k.py', '../_base_/schedules/seg_160k.py',
    '../_base_/optimizers/adamw_vit-adapter-layer-decay-0.95_seg.py', '../_base_/default_runtime_seg.py'
]
model = dict(test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
