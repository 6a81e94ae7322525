# ViT-S/16 (DeiT-S) ImageNet-1k classifier, 300 epochs at 224 (Touvron et al. 2021: 79.8 top-1 with the class
# token; here the stride-16 token map, after its output norm, is average-pooled): drop path 0.1, AdamW 1e-3 for
# 1024 images, wd 0.05, 5 warm-up epochs, cosine, label smoothing 0.1, Mixup / CutMix, RandAugment, no clipping.
_base_ = [
    '../_base_/models/image-classifier.py', '../_base_/datasets/imagenet.py', '../_base_/schedules/imagenet_300e.py',
    '../_base_/optimizers/adamw_in1k.py', '../_base_/default_runtime_cls.py'
]
model = dict(
    backbone=dict(type='vitdense.VisionTransformer', arch='small', img_size=224, drop_path_rate=0.1,
                  out_indices=(2,)),
    head=dict(in_channels=384))
optim_wrapper = dict(clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5)]
