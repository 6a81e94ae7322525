_base_ = './mask-rcnn_boat-swin-t-p4-w7_fpn_1x_coco.py'
pretrained = 'checkpoints/boat_swin_small.pth'
model = dict(backbone=dict(arch='small', drop_path_rate=0.2, init_cfg=dict(checkpoint=pretrained)))
