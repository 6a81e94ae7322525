# Mask R-CNN + FPN on BOAT-Swin-T (window 7, FSLA leaves of 49 tokens, overlap 20). The only ImageNet weights
# are mahaoyuHKU/pytorch-boat's BOAT-Swin-Tiny ('tiny.pth'), trained with its block placement: hence
# layout='pytorch-boat'. layout='paper' (FSLA in every block) loads the same file partially (see the log).
_base_ = './mask-rcnn_fpn.py'
pretrained = 'checkpoints/boat_swin_tiny.pth'
model = dict(
    backbone=dict(type='vitdense.BOATSwin', arch='tiny', window_size=7, layout='pytorch-boat', drop_path_rate=0.1,
                  out_indices=(0, 1, 2, 3), with_cp=False, init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
