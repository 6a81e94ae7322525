# ViT-B/16 (DeiT-B or AugReg ViT-B weights) UperNet, same recipe as ViT-S.
_base_ = './upernet_vit-s-p16_4xb4-160k_ade20k-512x512.py'
pretrained = 'checkpoints/deit_base_patch16_224-b5f2ef4d.pth'
model = dict(backbone=dict(arch='base', init_cfg=dict(checkpoint=pretrained)),
             decode_head=dict(in_channels=[192, 384, 768, 768]), auxiliary_head=dict(in_channels=768))
