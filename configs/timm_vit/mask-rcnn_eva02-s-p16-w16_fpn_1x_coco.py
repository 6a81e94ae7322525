# EVA-02-S Mask R-CNN 1x with EVA-02's detection recipe (Fang et al. 2023, its ViTDet configs): the patch-14 MIM
# weights run at patch 16 (the patch embedding resampled at load, FlexiViT's rule via timm), windows of 16 tokens
# + global blocks 2, 5, 8, 11, RoPE of the window in windowed blocks and of the whole grid in global ones (both at
# the 16 x 16 pretraining scale), drop path 0.1, layer-wise lr decay 0.7, AdamW lr 1e-4, wd 0.1. Checkpoint: timm's
# eva02_small_patch14_224.mim_in22k state dict (or the official EVA-02 release, mapped by timm's filter; its RoPE
# tables are recomputed). EVA-02 publishes no Mask R-CNN for S: no published number.
_base_ = './mask-rcnn_dinov2-s-p14-w14_fpn_1x_coco.py'
pretrained = 'checkpoints/eva02_small_patch14_224.mim_in22k.pth'
model = dict(
    backbone=dict(model_name='eva02_small_patch14_224', model_kwargs=dict(patch_size=16), window_size=16,
                  init_cfg=dict(checkpoint=pretrained)))
