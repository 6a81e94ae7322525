# Swin-S UperNet (published: 47.6 / 49.5 mIoU, 81M params).
_base_ = './upernet_swin-t-p4-w7_4xb4-160k_ade20k-512x512.py'
pretrained = 'checkpoints/swin_small_patch4_window7_224.pth'
model = dict(backbone=dict(arch='small', init_cfg=dict(checkpoint=pretrained)))
