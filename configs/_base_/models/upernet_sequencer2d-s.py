# UperNet (+ FCN auxiliary head on the stride-16 level) on Sequencer2D-S, 150 ADE20K classes.
_base_ = './upernet.py'
pretrained = 'checkpoints/sequencer2d_s.pth'
model = dict(
    backbone=dict(type='vitdense.Sequencer2D', arch='s', drop_path_rate=0.1, out_indices=(0, 1, 2, 3),
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[192, 192, 384, 384]),
    auxiliary_head=dict(in_channels=384))
