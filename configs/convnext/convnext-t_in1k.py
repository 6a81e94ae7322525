# ConvNeXt-T ImageNet-1k classifier, 300 epochs at 224 (Liu et al. 2022: 82.1 top-1): drop path 0.1, AdamW
# 4e-3 for 4096 images (= 1e-3 for 1024), wd 0.05, 20 warm-up epochs, cosine, label smoothing 0.1, Mixup /
# CutMix, RandAugment, random erasing 0.25, layer scale 1e-6, no gradient clipping.
_base_ = [
    '../_base_/models/image-classifier.py', '../_base_/datasets/imagenet.py', '../_base_/schedules/imagenet_300e.py',
    '../_base_/optimizers/adamw_in1k.py', '../_base_/default_runtime_cls.py'
]
model = dict(
    backbone=dict(type='vitdense.ConvNeXt', arch='tiny', drop_path_rate=0.1, out_indices=(3,)),
    head=dict(in_channels=768))
optim_wrapper = dict(clip_grad=None)
