# Semantic FPN on CeiT-T with ViTDet's simple feature pyramid; position embedding resampled at load time to
# the 512x512 crop grid (img_size=512); the coeusguo/ceit LeFFs (leff_final_act=False).
_base_ = './fpn.py'
pretrained = 'checkpoints/ceit_tiny_patch16_224.pth'
model = dict(
    backbone=dict(type='vitdense.CeiT', arch='tiny', img_size=512, drop_path_rate=0.1, leff_final_act=False,
                  out_indices=(0, 1, 2, 3), init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[48, 96, 192, 192]))
