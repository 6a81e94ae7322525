# Sequencer2D-S Semantic FPN ADE20K 80k with the PVT / PoolFormer Semantic FPN recipe.
_base_ = [
    '../_base_/models/fpn_sequencer2d-s.py', '../_base_/datasets/ade20k.py', '../_base_/schedules/seg_80k.py',
    '../_base_/optimizers/adamw_semantic-fpn.py', '../_base_/default_runtime_seg.py'
]
