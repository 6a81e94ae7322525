# ConvNeXt-S Semantic FPN, drop path 0.3 (as for UperNet).
_base_ = './fpn_convnext-t_4xb4-80k_ade20k-512x512.py'
pretrained = 'checkpoints/convnext_small_1k_224.pth'
model = dict(backbone=dict(arch='small', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)))
