# DINOv2 ViT-B/14 Mask R-CNN 1x with ViTDet's ViT-B recipe: windows 14 + global blocks 2, 5, 8, 11, drop path 0.1,
# AdamW lr 1e-4, wd 0.1, layer-wise lr decay 0.7. No published number for this exact recipe.
_base_ = './mask-rcnn_dinov2-s-p14-w14_fpn_1x_coco.py'
pretrained = 'checkpoints/dinov2_vitb14_pretrain.pth'
model = dict(
    backbone=dict(model_name='vit_base_patch14_dinov2', init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768, 768]))
