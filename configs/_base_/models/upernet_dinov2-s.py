# UperNet (+ FCN auxiliary head) on timm's DINOv2 ViT-S/14 (vitdense.TimmViT) with ViTDet's simple feature pyramid
# from the stride-14 map and global attention (as ViT-Adapter's plain-ViT baselines). A 512 x 512 crop is padded to
# 518 = 37 patches: exactly the grid DINOv2's position embedding was trained for (timm's img_size 518), so no
# resampling. Checkpoint: the official DINOv2 release or timm's vit_small_patch14_dinov2.lvd142m.
_base_ = './upernet.py'
pretrained = 'checkpoints/dinov2_vits14_pretrain.pth'
model = dict(
    backbone=dict(type='vitdense.TimmViT', model_name='vit_small_patch14_dinov2', drop_path_rate=0.1,
                  out_indices=(0, 1, 2, 3), init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 384]),
    auxiliary_head=dict(in_channels=384))
