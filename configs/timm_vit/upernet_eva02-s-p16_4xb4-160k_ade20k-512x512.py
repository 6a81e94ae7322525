# EVA-02-S UperNet ADE20K 160k: EVA-02's segmentation setting (Fang et al. 2023: UperNet, 512 crops, the patch-14
# MIM weights run at patch 16, patch embedding resampled at load) with ViT-Adapter's UperNet optimizer recipe for
# ViT-S (AdamW lr 6e-5, wd 0.01, layer-wise lr decay 0.95, drop path 0.1); global attention, RoPE of the 32 x 32
# grid at the 16 x 16 pretraining scale; the position embedding resampled once at load to the 512 grid. Checkpoint:
# timm's eva02_small_patch14_224.mim_in22k state dict. No published number for EVA-02-S with UperNet.
_base_ = './upernet_dinov2-s-p14_4xb4-160k_ade20k-512x512.py'
pretrained = 'checkpoints/eva02_small_patch14_224.mim_in22k.pth'
model = dict(
    backbone=dict(model_name='eva02_small_patch14_224', img_size=512, model_kwargs=dict(patch_size=16),
                  init_cfg=dict(checkpoint=pretrained)))
