# DINOv2 ViT-B/14 UperNet ADE20K 160k with ViT-Adapter's UperNet recipe for ViT-B: AdamW lr 6e-5, wd 0.01,
# layer-wise lr decay 0.95, drop path 0.3, sliding-window test. No published number for this exact recipe.
_base_ = './upernet_dinov2-s-p14_4xb4-160k_ade20k-512x512.py'
pretrained = 'checkpoints/dinov2_vitb14_pretrain.pth'
model = dict(
    backbone=dict(model_name='vit_base_patch14_dinov2', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[192, 384, 768, 768]),
    auxiliary_head=dict(in_channels=768))
