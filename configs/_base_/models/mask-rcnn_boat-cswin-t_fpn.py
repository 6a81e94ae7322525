# Mask R-CNN + FPN on BOAT-CSWin-T (stripes 1/2/7, global last stage, FSLA leaves of 49, overlap 20). The only
# ImageNet weights are pytorch-boat's BOAT-CSwin-Tiny ('cswin_tiny.pth.tar'): layout='pytorch-boat' reproduces
# its placement (even blocks) and unscaled q.k. Plain CSWin-T weights load too (FSLA left at init).
_base_ = './mask-rcnn_fpn.py'
pretrained = 'checkpoints/boat_cswin_tiny.pth.tar'
model = dict(
    backbone=dict(type='vitdense.BOATCSWin', arch='tiny', stripe_widths=(1, 2, 7, 7), layout='pytorch-boat',
                  drop_path_rate=0.2, out_indices=(0, 1, 2, 3), with_cp=False,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))
