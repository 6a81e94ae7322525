# Semantic FPN on a plain ViT-S/16 (DeiT-S layout) with ViTDet's simple feature pyramid, global attention and
# the class token; the 224 checkpoint's position embedding is resampled once at load time to the 512x512
# crop grid (img_size=512).
_base_ = './fpn.py'
pretrained = 'checkpoints/deit_small_patch16_224-cd65a155.pth'
model = dict(
    backbone=dict(type='vitdense.VisionTransformer', arch='small', img_size=512, drop_path_rate=0.1,
                  out_indices=(0, 1, 2, 3), init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 384]))
