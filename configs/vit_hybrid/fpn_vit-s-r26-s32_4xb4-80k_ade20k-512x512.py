_base_ = './fpn_vit-b-r50-s16_4xb4-80k_ade20k-512x512.py'
pretrained = 'checkpoints/vit_small_r26_s32_384.augreg_in21k_ft_in1k.pth'
model = dict(backbone=dict(arch='vit_small_r26_s32', init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[256, 512, 1024, 384]))
