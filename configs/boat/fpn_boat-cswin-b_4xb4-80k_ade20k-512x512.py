_base_ = './fpn_boat-cswin-t_4xb4-80k_ade20k-512x512.py'
pretrained = 'checkpoints/boat_cswin_base.pth.tar'
model = dict(backbone=dict(arch='base', drop_path_rate=0.4, init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[96, 192, 384, 768]))
