# ViT-Adapter-S on DINOv2-S/14 UperNet ADE20K 160k. Neither the paper nor czczup/ViT-Adapter publishes a DINOv2
# segmentation recipe: vitdense takes the paper's DeiT one (AdamW 6e-5, wd 0.01, drop path 0.2, global attention)
# with the repo's DINOv2 detection finding that pretrained DINOv2 blocks want a strong layer decay (0.7 there,
# 0.95 for DeiT): 0.8 here, between the two. The ViT runs at its own patch 14.
_base_ = './upernet_vit-adapter-s_4xb4-160k_ade20k-512x512.py'
pretrained = 'checkpoints/vit_small_patch14_dinov2.lvd142m.pth'
model = dict(backbone=dict(model_name='vit_small_patch14_dinov2', init_cfg=dict(checkpoint=pretrained)))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.8))
