# Mask R-CNN + FPN on a plain ViT-S/16 (DeiT-S layout) made multi-scale by ViTDet's simple feature pyramid
# inside the backbone (strides 4/8/16/32, channels C/4, C/2, C, C). ViTDet-style attention: windows of 14
# tokens in every block but 2, 5, 8, 11 (global), so no class token, and ViTDet's decomposed relative
# position bias in every block (tables for the 14-token window in window blocks, for the img_size grid in
# global ones, resampled to each input's grid at run time; they start at zero: the ImageNet checkpoint has
# none). The ImageNet checkpoint is timm's deit_small_patch16_224 / vit_small_patch16_224.augreg_* or the
# official DeiT release ('model' key); its 14x14 position embedding is resampled to each input's grid at run
# time.
_base_ = './mask-rcnn_fpn.py'
pretrained = 'checkpoints/deit_small_patch16_224-cd65a155.pth'
model = dict(
    backbone=dict(type='vitdense.VisionTransformer', arch='small', img_size=224, drop_path_rate=0.1,
                  with_cls_token=False, window_size=14, global_attn_indexes=(2, 5, 8, 11), use_rel_pos=True,
                  out_indices=(0, 1, 2, 3), with_cp=False,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 384]))
