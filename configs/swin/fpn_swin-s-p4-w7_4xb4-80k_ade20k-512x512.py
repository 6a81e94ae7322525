_base_ = './fpn_swin-t-p4-w7_4xb4-80k_ade20k-512x512.py'
pretrained = 'checkpoints/swin_small_patch4_window7_224.pth'
model = dict(backbone=dict(arch='small', init_cfg=dict(checkpoint=pretrained)))
