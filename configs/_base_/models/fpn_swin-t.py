# Semantic FPN on Swin-T (window 7).
_base_ = './fpn.py'
pretrained = 'checkpoints/swin_tiny_patch4_window7_224.pth'
model = dict(
    backbone=dict(type='vitdense.SwinTransformer', arch='tiny', window_size=7, drop_path_rate=0.3,
                  out_indices=(0, 1, 2, 3), init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
