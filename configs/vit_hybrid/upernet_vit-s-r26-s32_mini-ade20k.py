# R26+ViT-S/32 hybrid UperNet on the bundled real mini ADE20K, from scratch, 256x256 crops (position grid 8x8).
_base_ = [
    '../_base_/models/upernet_vit-b-r50.py', '../_base_/datasets/ade20k_mini.py', '../_base_/schedules/mini_seg.py',
    '../_base_/optimizers/adamw_vit-adapter-layer-decay-0.95_seg.py', '../_base_/default_runtime_seg.py'
]
model = dict(data_preprocessor=dict(size=(256, 256)),
             backbone=dict(arch='vit_small_r26_s32', img_size=256, init_cfg=dict(checkpoint=None)),
             decode_head=dict(in_channels=[256, 512, 1024, 384]), auxiliary_head=dict(in_channels=1024))
optim_wrapper = dict(optimizer=dict(lr=3e-4))
