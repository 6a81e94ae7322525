# ConvNeXt-S: drop path 0.6 as in its official (Cascade) detection recipe.
_base_ = './mask-rcnn_convnext-t-p4-w7_fpn_1x_coco.py'
pretrained = 'checkpoints/convnext_small_1k_224.pth'
model = dict(backbone=dict(arch='small', drop_path_rate=0.6, init_cfg=dict(checkpoint=pretrained)))
