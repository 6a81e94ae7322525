# UperNet (+ FCN auxiliary head) on ConvNeXt-T, 150 ADE20K classes.
_base_ = './upernet.py'
pretrained = 'checkpoints/convnext_tiny_1k_224.pth'
model = dict(
    backbone=dict(type='vitdense.ConvNeXt', arch='tiny', drop_path_rate=0.4, out_indices=(0, 1, 2, 3),
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
