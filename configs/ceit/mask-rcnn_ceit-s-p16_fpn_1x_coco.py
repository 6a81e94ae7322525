_base_ = './mask-rcnn_ceit-t-p16_fpn_1x_coco.py'
pretrained = 'checkpoints/ceit_small_patch16_224.pth'
model = dict(backbone=dict(arch='small', init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[96, 192, 384, 384]))
