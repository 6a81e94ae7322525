# Swin-T Semantic FPN ADE20K 80k with the PVT / PoolFormer Semantic FPN recipe (a vitdense choice: Swin
# publishes no Semantic FPN recipe); drop path as for UperNet.
_base_ = [
    '../_base_/models/fpn_swin-t.py', '../_base_/datasets/ade20k.py', '../_base_/schedules/seg_80k.py',
    '../_base_/optimizers/adamw_semantic-fpn.py', '../_base_/default_runtime_seg.py'
]
