# R50+ViT-B/16 hybrid Mask R-CNN 1x: ViTDet windows (14, global blocks 2/5/8/11), ResNet + token pyramid, mmdet's
# FPN. Layer decay: the hybrid has 18 depths (stem, 3 ResNet stages, embedding, 12 blocks, the rest), so ViTDet's
# 0.7 over ViT-B's 14 depths becomes 0.76 here, which keeps the stem's lr factor where ViTDet puts the patch
# embedding's (0.76 ** 17 = 0.0094 vs 0.7 ** 13 = 0.0097). No published number for this recipe.
_base_ = [
    '../_base_/models/mask-rcnn_vit-b-r50_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/det_1x.py', '../_base_/optimizers/adamw_vitdet-layer-decay-0.7_det.py',
    '../_base_/default_runtime_det.py'
]
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.76))
