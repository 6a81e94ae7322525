# Mask R-CNN + FPN on Swin-T (window 7). The ImageNet checkpoint is any Swin-T layout vitdense reads
# (timm, official microsoft/Swin-Transformer 'model', mmdet); see tools/convert_checkpoint.py.
_base_ = './mask-rcnn_fpn.py'
pretrained = 'checkpoints/swin_tiny_patch4_window7_224.pth'
model = dict(
    backbone=dict(type='vitdense.SwinTransformer', arch='tiny', window_size=7, drop_path_rate=0.1,
                  out_indices=(0, 1, 2, 3), with_cp=False,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
