_base_ = './fpn_boat-swin-t-p4-w7_4xb4-80k_ade20k-512x512.py'
pretrained = 'checkpoints/boat_swin_base.pth'
model = dict(backbone=dict(arch='base', init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[128, 256, 512, 1024]))
