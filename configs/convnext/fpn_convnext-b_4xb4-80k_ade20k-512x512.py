# ConvNeXt-B Semantic FPN, drop path 0.4 (as for UperNet).
_base_ = './fpn_convnext-t_4xb4-80k_ade20k-512x512.py'
pretrained = 'checkpoints/convnext_base_1k_224.pth'
model = dict(backbone=dict(arch='base', init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[128, 256, 512, 1024]))
