# Semantic FPN on BOAT-Swin-T; pytorch-boat weights (layout, see mask-rcnn_boat-swin-t_fpn.py).
_base_ = './fpn.py'
pretrained = 'checkpoints/boat_swin_tiny.pth'
model = dict(
    backbone=dict(type='vitdense.BOATSwin', arch='tiny', window_size=7, layout='pytorch-boat', drop_path_rate=0.3,
                  out_indices=(0, 1, 2, 3), init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
