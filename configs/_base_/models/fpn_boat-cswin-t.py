# Semantic FPN on BOAT-CSWin-T; pytorch-boat weights (layout, see mask-rcnn_boat-cswin-t_fpn.py).
_base_ = './fpn.py'
pretrained = 'checkpoints/boat_cswin_tiny.pth.tar'
model = dict(
    backbone=dict(type='vitdense.BOATCSWin', arch='tiny', stripe_widths=(1, 2, 7, 7), layout='pytorch-boat',
                  drop_path_rate=0.2, out_indices=(0, 1, 2, 3),
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))
