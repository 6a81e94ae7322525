# ViT-Adapter-B (DeiT-B weights) Mask R-CNN 3x + multi-scale training. Paper / czczup/ViT-Adapter: 49.6 box AP /
# 43.6 mask AP, 120M params.
_base_ = './mask-rcnn_vit-adapter-s_fpn_ms-crop-3x_coco.py'
pretrained = 'checkpoints/deit_base_patch16_224-b5f2ef4d.pth'
model = dict(backbone=dict(model_name='deit_base_patch16_224', deform_num_heads=12, deform_ratio=0.5,
                           drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[768, 768, 768, 768]))
