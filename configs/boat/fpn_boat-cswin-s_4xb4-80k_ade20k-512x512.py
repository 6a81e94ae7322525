_base_ = './fpn_boat-cswin-t_4xb4-80k_ade20k-512x512.py'
pretrained = 'checkpoints/boat_cswin_small.pth.tar'
model = dict(backbone=dict(arch='small', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)))
