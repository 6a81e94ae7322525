# R26+ViT-S/32 hybrid Mask R-CNN 3x (multi-scale + crop); global attention, see the 1x config.
_base_ = './mask-rcnn_vit-b-r50-s16-w14_fpn_ms-crop-3x_coco.py'
pretrained = 'checkpoints/vit_small_r26_s32_384.augreg_in21k_ft_in1k.pth'
model = dict(backbone=dict(arch='vit_small_r26_s32', with_cls_token=True, window_size=0, global_attn_indexes=(),
                           init_cfg=dict(checkpoint=pretrained)),
             neck=dict(in_channels=[256, 512, 1024, 384]))
