# Semantic FPN on Sequencer2D-S.
_base_ = './fpn.py'
pretrained = 'checkpoints/sequencer2d_s.pth'
model = dict(
    backbone=dict(type='vitdense.Sequencer2D', arch='s', drop_path_rate=0.1, out_indices=(0, 1, 2, 3),
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 192, 384, 384]))
