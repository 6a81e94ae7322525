# ViT-Adapter-S UperNet on the bundled real mini ADE20K, from scratch, 256x256 crops.
_base_ = [
    '../_base_/models/upernet_vit-adapter-s.py', '../_base_/datasets/ade20k_mini.py',
    '../_base_/schedules/mini_seg.py', '../_base_/optimizers/adamw_vit-adapter-layer-decay-0.95_seg.py',
    '../_base_/default_runtime_seg.py'
]
model = dict(data_preprocessor=dict(size=(256, 256)), backbone=dict(init_cfg=dict(checkpoint=None)))
optim_wrapper = dict(optimizer=dict(lr=3e-4))
