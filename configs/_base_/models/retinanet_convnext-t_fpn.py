# RetinaNet + FPN on ConvNeXt-T: stages 1-3 only (stride 4 is not read, so it is not output).
_base_ = './retinanet_fpn.py'
pretrained = 'checkpoints/convnext_tiny_1k_224.pth'
model = dict(
    backbone=dict(type='vitdense.ConvNeXt', arch='tiny', drop_path_rate=0.4, out_indices=(1, 2, 3),
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768]))
