# Sequencer2D-L UperNet (drop path 0.3, a choice: no published UperNet recipe).
_base_ = './upernet_sequencer2d-s_4xb4-160k_ade20k-512x512.py'
pretrained = 'checkpoints/sequencer2d_l.pth'
model = dict(backbone=dict(arch='l', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)))
