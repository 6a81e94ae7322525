_base_ = './mask-rcnn_boat-swin-t-p4-w7_fpn_ms-crop-3x_coco.py'
pretrained = 'checkpoints/boat_swin_base.pth'
model = dict(backbone=dict(arch='base', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[128, 256, 512, 1024]))
