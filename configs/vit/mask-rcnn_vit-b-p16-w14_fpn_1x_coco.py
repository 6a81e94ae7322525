# ViT-B/16 (DeiT-B or AugReg ViT-B weights): drop path 0.1 and layer decay 0.7 as in ViTDet's ViT-B.
_base_ = './mask-rcnn_vit-s-p16-w14_fpn_1x_coco.py'
pretrained = 'checkpoints/deit_base_patch16_224-b5f2ef4d.pth'
model = dict(backbone=dict(arch='base', init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[192, 384, 768, 768]))
