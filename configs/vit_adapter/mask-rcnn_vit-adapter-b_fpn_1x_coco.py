# ViT-Adapter-B (DeiT-B weights) Mask R-CNN 1x: 12 deformable heads, deform ratio 0.5, drop path 0.3 (the paper's
# ViT-Adapter-B). Paper (Table 1): 47.0 box AP / 41.8 mask AP, 120M params.
_base_ = './mask-rcnn_vit-adapter-s_fpn_1x_coco.py'
pretrained = 'checkpoints/deit_base_patch16_224-b5f2ef4d.pth'
model = dict(backbone=dict(model_name='deit_base_patch16_224', deform_num_heads=12, deform_ratio=0.5,
                           drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[768, 768, 768, 768]))
