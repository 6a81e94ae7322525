# Sequencer2D-L Semantic FPN (drop path 0.3).
_base_ = './fpn_sequencer2d-s_4xb4-80k_ade20k-512x512.py'
pretrained = 'checkpoints/sequencer2d_l.pth'
model = dict(backbone=dict(arch='l', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)))
