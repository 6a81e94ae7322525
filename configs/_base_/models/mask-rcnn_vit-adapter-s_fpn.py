# Mask R-CNN + FPN on ViT-Adapter-S (Chen et al., ICLR 2023): a DeiT-S ViT (timm's deit_small_patch16_224 through
# vitdense.TimmViT, run without its class token as in the paper) with the adapter's spatial prior module,
# 4 interactions (injector + extractor with deformable attention, every 3 blocks) and its 4-level pyramid
# (384 channels each). The paper's detection attention: windows of 14 tokens in every block but 2, 5, 8, 11
# (global). The ImageNet checkpoint (timm / official DeiT release) loads into the ViT; its class token and that
# token's position are dropped, the 14x14 position embedding is resampled to each input's grid at run time; the
# adapter starts at its own initialisation (injector gammas at zero).
_base_ = './mask-rcnn_fpn.py'
pretrained = 'checkpoints/deit_small_patch16_224-cd65a155.pth'
model = dict(
    backbone=dict(type='vitdense.ViTAdapter', model_name='deit_small_patch16_224',
                  model_kwargs=dict(class_token=False), window_size=14, global_attn_indexes=(2, 5, 8, 11),
                  interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]], conv_inplane=64, deform_num_heads=6,
                  n_points=4, deform_ratio=1.0, cffn_ratio=0.25, init_values=0.0, drop_path_rate=0.2,
                  out_indices=(0, 1, 2, 3), with_cp=False,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[384, 384, 384, 384]))
