# Swin-T UperNet ADE20K 160k (published: 44.5 / 45.8 mIoU ss / ms, 60M params, 945 GFLOPs at 512x2048).
_base_ = [
    '../_base_/models/upernet_swin-t.py', '../_base_/datasets/ade20k.py', '../_base_/schedules/seg_160k.py',
    '../_base_/optimizers/adamw_swin-seg.py', '../_base_/default_runtime_seg.py'
]
