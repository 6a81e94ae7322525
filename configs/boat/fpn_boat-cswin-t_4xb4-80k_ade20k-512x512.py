# BOAT-CSWin-T Semantic FPN ADE20K 80k with the PVT / PoolFormer Semantic FPN recipe (a vitdense choice; drop path
# T 0.2, S 0.3, B 0.4 as for UperNet).
_base_ = [
    '../_base_/models/fpn_boat-cswin-t.py', '../_base_/datasets/ade20k.py', '../_base_/schedules/seg_80k.py',
    '../_base_/optimizers/adamw_semantic-fpn.py', '../_base_/default_runtime_seg.py'
]
