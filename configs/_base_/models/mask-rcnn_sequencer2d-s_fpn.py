# Mask R-CNN + FPN on Sequencer2D-S. The trunk runs at strides 7/14 as trained on ImageNet; the backbone
# resamples it to strides 4/8/16/32 with channels 192/192/384/384 (see vitdense/models/backbones/sequencer.py).
# The ImageNet checkpoint: timm (sequencer2d_s) or the official okojoalg/sequencer layout.
_base_ = './mask-rcnn_fpn.py'
pretrained = 'checkpoints/sequencer2d_s.pth'
model = dict(
    backbone=dict(type='vitdense.Sequencer2D', arch='s', drop_path_rate=0.1, out_indices=(0, 1, 2, 3),
                  with_cp=False, init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 192, 384, 384]))
