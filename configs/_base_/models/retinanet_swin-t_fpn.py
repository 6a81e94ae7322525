# RetinaNet + FPN on Swin-T (window 7): stages 1-3 only (stride 4 is not read, so it is not output).
_base_ = './retinanet_fpn.py'
pretrained = 'checkpoints/swin_tiny_patch4_window7_224.pth'
model = dict(
    backbone=dict(type='vitdense.SwinTransformer', arch='tiny', window_size=7, drop_path_rate=0.1,
                  out_indices=(1, 2, 3), with_cp=False,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768]))
