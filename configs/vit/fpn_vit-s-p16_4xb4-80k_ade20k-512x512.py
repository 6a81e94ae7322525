# ViT-S/16 (DeiT-S weights) Semantic FPN ADE20K 80k with the PVT / PoolFormer Semantic FPN recipe (a vitdense
# choice); sliding-window test as for UperNet (the position embedding is learned at the 512x512 grid).
_base_ = [
    '../_base_/models/fpn_vit-s.py', '../_base_/datasets/ade20k.py', '../_base_/schedules/seg_80k.py',
    '../_base_/optimizers/adamw_semantic-fpn.py', '../_base_/default_runtime_seg.py'
]
model = dict(test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
