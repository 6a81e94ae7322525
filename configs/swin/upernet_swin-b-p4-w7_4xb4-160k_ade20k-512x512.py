# Swin-B UperNet (published: 48.1 / 49.7 mIoU, 121M params).
_base_ = './upernet_swin-t-p4-w7_4xb4-160k_ade20k-512x512.py'
pretrained = 'checkpoints/swin_base_patch4_window7_224.pth'
model = dict(backbone=dict(arch='base', init_cfg=dict(checkpoint=pretrained)),
             decode_head=dict(in_channels=[128, 256, 512, 1024]), auxiliary_head=dict(in_channels=512))
