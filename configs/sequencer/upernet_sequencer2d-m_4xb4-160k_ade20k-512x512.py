# Sequencer2D-M UperNet (drop path 0.2, a choice: no published UperNet recipe).
_base_ = './upernet_sequencer2d-s_4xb4-160k_ade20k-512x512.py'
pretrained = 'checkpoints/sequencer2d_m.pth'
model = dict(backbone=dict(arch='m', drop_path_rate=0.2, init_cfg=dict(checkpoint=pretrained)))
