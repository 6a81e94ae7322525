_base_ = './mask-rcnn_vit-s-p16-w14_fpn_ms-crop-3x_coco.py'
pretrained = 'checkpoints/deit_base_patch16_224-b5f2ef4d.pth'
model = dict(backbone=dict(arch='base', init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[192, 384, 768, 768]))
