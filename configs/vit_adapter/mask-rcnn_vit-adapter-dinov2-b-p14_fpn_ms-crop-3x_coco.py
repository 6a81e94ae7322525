# ViT-Adapter-B on DINOv2-B/14 (timm's vit_base_patch14_dinov2) Mask R-CNN 3x + multi-scale: 12 deformable heads,
# deform ratio 0.5, drop path 0.3, layer decay 0.6 (czczup/ViT-Adapter's DINOv2-B recipe). czczup/ViT-Adapter:
# 54.1 box AP / 47.8 mask AP, 120M params.
_base_ = './mask-rcnn_vit-adapter-dinov2-s-p14_fpn_ms-crop-3x_coco.py'
pretrained = 'checkpoints/vit_base_patch14_dinov2.lvd142m.pth'
model = dict(backbone=dict(model_name='vit_base_patch14_dinov2', deform_num_heads=12, deform_ratio=0.5,
                           drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[768, 768, 768, 768]))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.6))
