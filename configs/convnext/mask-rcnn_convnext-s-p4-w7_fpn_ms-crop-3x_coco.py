_base_ = './mask-rcnn_convnext-t-p4-w7_fpn_ms-crop-3x_coco.py'
pretrained = 'checkpoints/convnext_small_1k_224.pth'
model = dict(backbone=dict(arch='small', drop_path_rate=0.6, init_cfg=dict(checkpoint=pretrained)))
