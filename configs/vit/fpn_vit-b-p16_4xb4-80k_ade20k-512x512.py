_base_ = './fpn_vit-s-p16_4xb4-80k_ade20k-512x512.py'
pretrained = 'checkpoints/deit_base_patch16_224-b5f2ef4d.pth'
model = dict(backbone=dict(arch='base', init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[192, 384, 768, 768]))
