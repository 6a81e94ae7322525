# ConvNeXt-B: drop path 0.7 as in its official (Cascade) detection recipe.
_base_ = './mask-rcnn_convnext-t-p4-w7_fpn_1x_coco.py'
pretrained = 'checkpoints/convnext_base_1k_224.pth'
model = dict(backbone=dict(arch='base', drop_path_rate=0.7, init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[128, 256, 512, 1024]))
