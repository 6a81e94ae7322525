# R26+ViT-S/32 hybrid ImageNet-1k classifier (timm vit_small_r26_s32: AugReg, Steiner et al. 2022) with the
# generic 300-epoch AdamW recipe, DeiT's 5 warm-up epochs, no clipping; the stride-32 token map (384 channels),
# after its output norm, is average-pooled. timm's hybrids normalise pixels with mean = std = 127.5.
_base_ = [
    '../_base_/models/image-classifier.py', '../_base_/datasets/imagenet.py', '../_base_/schedules/imagenet_300e.py',
    '../_base_/optimizers/adamw_in1k.py', '../_base_/default_runtime_cls.py'
]
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(type='vitdense.HybridVisionTransformer', arch='vit_small_r26_s32', img_size=224,
                  drop_path_rate=0.1, out_indices=(3,)),
    head=dict(in_channels=384))
optim_wrapper = dict(clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5)]
