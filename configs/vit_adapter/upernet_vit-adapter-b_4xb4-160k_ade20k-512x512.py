# ViT-Adapter-B (DeiT-B weights) UperNet ADE20K 160k: 12 deformable heads, deform ratio 0.5, drop path 0.3.
# Paper: 48.8 mIoU (49.7 ms), 134M params.
_base_ = './upernet_vit-adapter-s_4xb4-160k_ade20k-512x512.py'
pretrained = 'checkpoints/deit_base_patch16_224-b5f2ef4d.pth'
model = dict(backbone=dict(model_name='deit_base_patch16_224', deform_num_heads=12, deform_ratio=0.5,
                           drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
             decode_head=dict(in_channels=[768, 768, 768, 768]), auxiliary_head=dict(in_channels=768))
