_base_ = './mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'
pretrained = 'checkpoints/swin_small_patch4_window7_224.pth'
model = dict(backbone=dict(arch='small', drop_path_rate=0.2, init_cfg=dict(checkpoint=pretrained)))
