# BOAT-Swin-T Semantic FPN ADE20K 80k with the PVT / PoolFormer Semantic FPN recipe (a vitdense choice).
_base_ = [
    '../_base_/models/fpn_boat-swin-t.py', '../_base_/datasets/ade20k.py', '../_base_/schedules/seg_80k.py',
    '../_base_/optimizers/adamw_semantic-fpn.py', '../_base_/default_runtime_seg.py'
]
