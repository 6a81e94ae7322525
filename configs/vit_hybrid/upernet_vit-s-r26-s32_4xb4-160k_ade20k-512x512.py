# R26+ViT-S/32 hybrid UperNet ADE20K 160k, same recipe as R50+ViT-B/16; the FCN auxiliary head reads level 2,
# here ResNet stage 3 (1024 ch, stride 16). Layer decay 0.96 is kept (19 depths: stem factor 0.96 ** 18 = 0.48).
_base_ = './upernet_vit-b-r50-s16_4xb4-160k_ade20k-512x512.py'
pretrained = 'checkpoints/vit_small_r26_s32_384.augreg_in21k_ft_in1k.pth'
model = dict(backbone=dict(arch='vit_small_r26_s32', init_cfg=dict(checkpoint=pretrained)),
             decode_head=dict(in_channels=[256, 512, 1024, 384]), auxiliary_head=dict(in_channels=1024))
