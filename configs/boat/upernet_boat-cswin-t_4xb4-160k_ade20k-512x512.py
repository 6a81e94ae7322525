# BOAT-CSWin-T UperNet ADE20K 160k with CSWin's segmentation recipe (AdamW 6e-5, wd 0.01; drop path T 0.2,
# S 0.3, B 0.4 as for detection).
_base_ = [
    '../_base_/models/upernet_boat-cswin-t.py', '../_base_/datasets/ade20k.py', '../_base_/schedules/seg_160k.py',
    '../_base_/optimizers/adamw_swin-seg.py', '../_base_/default_runtime_seg.py'
]
