# BOAT-Swin-T UperNet ADE20K 160k with Swin-T's recipe (AdamW 6e-5, wd 0.01, drop path 0.3).
_base_ = [
    '../_base_/models/upernet_boat-swin-t.py', '../_base_/datasets/ade20k.py', '../_base_/schedules/seg_160k.py',
    '../_base_/optimizers/adamw_swin-seg.py', '../_base_/default_runtime_seg.py'
]
