# ViT-Adapter-B on DINOv2-B/14 UperNet ADE20K 160k: the ViT-Adapter-B settings (12 deformable heads, deform ratio
# 0.5, drop path 0.3) with the DINOv2-S config's recipe (vitdense's choice, no published one; see there).
_base_ = './upernet_vit-adapter-dinov2-s-p14_4xb4-160k_ade20k-512x512.py'
pretrained = 'checkpoints/vit_base_patch14_dinov2.lvd142m.pth'
model = dict(backbone=dict(model_name='vit_base_patch14_dinov2', deform_num_heads=12, deform_ratio=0.5,
                           drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
             decode_head=dict(in_channels=[768, 768, 768, 768]), auxiliary_head=dict(in_channels=768))
