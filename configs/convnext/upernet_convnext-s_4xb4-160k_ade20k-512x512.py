# ConvNeXt-S UperNet (published: 48.7 / 49.6 mIoU, 82M params), drop path 0.3.
_base_ = './upernet_convnext-t_4xb4-160k_ade20k-512x512.py'
pretrained = 'checkpoints/convnext_small_1k_224.pth'
model = dict(backbone=dict(arch='small', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)))
