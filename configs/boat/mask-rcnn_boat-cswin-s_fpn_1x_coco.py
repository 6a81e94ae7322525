_base_ = './mask-rcnn_boat-cswin-t_fpn_1x_coco.py'
pretrained = 'checkpoints/boat_cswin_small.pth.tar'
model = dict(backbone=dict(arch='small', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)))
