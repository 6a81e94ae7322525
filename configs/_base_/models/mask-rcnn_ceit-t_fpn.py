# Mask R-CNN + FPN on CeiT-T (I2T stem + LeFF blocks, no LCA) made multi-scale by ViTDet's simple feature
# pyramid (strides 4/8/16/32, channels 48/96/192/192). Global attention with the class token, as CeiT is
# pretrained. The ImageNet checkpoint: coeusguo/ceit layout (remapped) or vitdense's CeiTClassifier; the LeFFs
# are the coeusguo/ceit ones it was trained with (no GELU after the last BN: leff_final_act=False).
_base_ = './mask-rcnn_fpn.py'
pretrained = 'checkpoints/ceit_tiny_patch16_224.pth'
model = dict(
    backbone=dict(type='vitdense.CeiT', arch='tiny', img_size=224, drop_path_rate=0.1, leff_final_act=False,
                  out_indices=(0, 1, 2, 3), with_cp=False,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[48, 96, 192, 192]))
