# Sequencer2D-S Semantic FPN ADE20K 80k. Optimizer: the PVT / PoolFormer Semantic FPN recipe (AdamW lr 2e-4,
# wd 1e-4; mmseg's poolformer configs run it as 40k x 32 images, here 80k x 16), on top of the Swin seg base
# (no weight decay on norms).
_base_ = [
    '../_base_/models/fpn_sequencer2d-s.py', '../_base_/datasets/ade20k.py', '../_base_/schedules/seg_80k.py',
    '../_base_/optimizers/adamw_swin-seg.py', '../_base_/default_runtime_seg.py'
]
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=1e-4))
