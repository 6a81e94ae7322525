# R26+ViT-S/32 hybrid (timm vit_small_r26_s32_384.augreg_in21k_ft_in1k): four ResNet stages, tokens at stride 32,
# so ResNet stages 1-3 give strides 4 / 8 / 16 (256, 512, 1024 ch) and the tokens stride 32 (384 ch). A 1333x800
# image is only 42x25 tokens: global attention with the class token, no windows. Layer decay 0.76 is kept
# (19 depths here: the stem's lr factor is 0.76 ** 18 = 0.0072).
_base_ = './mask-rcnn_vit-b-r50-s16-w14_fpn_1x_coco.py'
pretrained = 'checkpoints/vit_small_r26_s32_384.augreg_in21k_ft_in1k.pth'
model = dict(backbone=dict(arch='vit_small_r26_s32', with_cls_token=True, window_size=0, global_attn_indexes=(),
                           init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[256, 512, 1024, 384]))
