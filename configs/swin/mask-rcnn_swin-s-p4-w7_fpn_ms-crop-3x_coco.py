# Swin-S Mask R-CNN 3x (published: 48.5 box / 43.3 mask AP, 69M params, 359 GFLOPs).
_base_ = './mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'
pretrained = 'checkpoints/swin_small_patch4_window7_224.pth'
model = dict(backbone=dict(arch='small', drop_path_rate=0.2, init_cfg=dict(checkpoint=pretrained)))
