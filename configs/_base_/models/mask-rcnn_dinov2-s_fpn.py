# Mask R-CNN + FPN on timm's DINOv2 ViT-S/14 (vitdense.TimmViT: timm's vit_small_patch14_dinov2, its own blocks)
# with ViTDet's backbone recipe (Li et al. 2022): windows of 14 tokens in every block but 2, 5, 8, 11 (global),
# ViTDet's simple feature pyramid. The image is zero-padded to whole 14-pixel patches; the pyramid's scale factors
# come from the patch stride (14/4 ... 14/32: ViTDet's x4 / x2 / identity / max-pool, then an exact resampling to
# strides 4 / 8 / 16 / 32). The class token takes part in every window (vitdense's choice, see TimmViT). The
# position embedding stays at timm's 518 grid (37 x 37, as DINOv2 was trained) and is resampled to each input's
# grid at run time, as ViTDet does. Checkpoint: the official DINOv2 release (dinov2_vits14_pretrain.pth, mapped
# by timm's filter) or timm's vit_small_patch14_dinov2.lvd142m state dict.
_base_ = './mask-rcnn_fpn.py'
pretrained = 'checkpoints/dinov2_vits14_pretrain.pth'
model = dict(
    backbone=dict(type='vitdense.TimmViT', model_name='vit_small_patch14_dinov2', drop_path_rate=0.1,
                  window_size=14, global_attn_indexes=(2, 5, 8, 11), out_indices=(0, 1, 2, 3), with_cp=False,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 384]))
