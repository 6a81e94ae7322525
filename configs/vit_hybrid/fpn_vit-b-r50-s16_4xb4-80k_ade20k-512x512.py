# R50+ViT-B/16 hybrid Semantic FPN ADE20K 80k with the PVT / PoolFormer Semantic FPN recipe (a vitdense choice);
# sliding-window test as for UperNet.
_base_ = [
    '../_base_/models/fpn_vit-b-r50.py', '../_base_/datasets/ade20k.py', '../_base_/schedules/seg_80k.py',
    '../_base_/optimizers/adamw_semantic-fpn.py', '../_base_/default_runtime_seg.py'
]
model = dict(test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
