# UperNet (+ FCN auxiliary head) on CeiT-T with ViTDet's simple feature pyramid; the 224 checkpoint's
# position embedding is resampled at load time to the 512x512 crop grid (img_size=512). The LeFFs are the
# coeusguo/ceit ones the official weights were trained with (no GELU after the last BN: leff_final_act=False).
_base_ = './upernet.py'
pretrained = 'checkpoints/ceit_tiny_patch16_224.pth'
model = dict(
    backbone=dict(type='vitdense.CeiT', arch='tiny', img_size=512, drop_path_rate=0.1, leff_final_act=False,
                  out_indices=(0, 1, 2, 3), init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[48, 96, 192, 192]),
    auxiliary_head=dict(in_channels=192))
