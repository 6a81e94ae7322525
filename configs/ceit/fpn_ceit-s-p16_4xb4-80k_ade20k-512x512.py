_base_ = './fpn_ceit-t-p16_4xb4-80k_ade20k-512x512.py'
pretrained = 'checkpoints/ceit_small_patch16_224.pth'
model = dict(backbone=dict(arch='small', init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[96, 192, 384, 384]))
