# Semantic FPN on the hybrid R50+ViT-B/16 (timm vit_base_r50_s16_*): ResNet stages 1-2 for strides 4 / 8, the
# token map and its max-pool for 16 / 32; position embedding resampled at load time to the 512x512 crop grid.
# Mean = std = 127.5, as timm's hybrids were trained.
_base_ = './fpn.py'
pretrained = 'checkpoints/vit_base_r50_s16_384.orig_in21k_ft_in1k.pth'
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(type='vitdense.HybridVisionTransformer', arch='vit_base_r50_s16', img_size=512,
                  drop_path_rate=0.1, out_indices=(0, 1, 2, 3),
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[256, 512, 768, 768]))
