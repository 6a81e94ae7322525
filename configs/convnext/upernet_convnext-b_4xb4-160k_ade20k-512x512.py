# ConvNeXt-B UperNet (published: 49.1 / 49.9 mIoU, 122M params), drop path 0.4.
_base_ = './upernet_convnext-t_4xb4-160k_ade20k-512x512.py'
pretrained = 'checkpoints/convnext_base_1k_224.pth'
model = dict(backbone=dict(arch='base', init_cfg=dict(checkpoint=pretrained)),
             decode_head=dict(in_channels=[128, 256, 512, 1024]), auxiliary_head=dict(in_channels=512))
