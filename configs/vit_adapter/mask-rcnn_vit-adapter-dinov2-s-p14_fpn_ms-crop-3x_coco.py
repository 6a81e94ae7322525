# ViT-Adapter-S on DINOv2-S/14 (timm's vit_small_patch14_dinov2, layer scale) Mask R-CNN 3x + multi-scale,
# czczup/ViT-Adapter's DINOv2 recipe: layer-wise lr decay 0.7 (AdamW 1e-4, wd 0.05), drop path 0.2, windows of 14
# with global blocks 2, 5, 8, 11, no class token. The ViT runs at its own patch 14 (the repo converts the patch
# embedding to 16 first): the adapter's deformable attentions read any token grid. The 37x37 (518 px) position
# embedding is resampled to each input's grid at run time. czczup/ViT-Adapter: 51.5 box AP / 45.6 mask AP, 48M.
_base_ = [
    '../_base_/models/mask-rcnn_vit-adapter-s_fpn.py', '../_base_/datasets/coco_instance_ms-crop-1024.py',
    '../_base_/schedules/det_3x.py', '../_base_/optimizers/adamw_layer-decay_det.py',
    '../_base_/default_runtime_det.py'
]
pretrained = 'checkpoints/vit_small_patch14_dinov2.lvd142m.pth'
model = dict(backbone=dict(model_name='vit_small_patch14_dinov2', init_cfg=dict(checkpoint=pretrained)))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.7))
