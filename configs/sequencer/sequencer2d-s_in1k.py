# Sequencer2D-S ImageNet-1k classifier, 300 epochs at 224 (Tatsunami & Taki 2022: 82.3 top-1): AdamW 2e-3 for
# 2048 images (= 1e-3 for 1024), wd 0.05, 20 warm-up epochs, cosine, label smoothing 0.1, Mixup / CutMix,
# RandAugment, random erasing 0.25, drop path 0.1. pyramid=False: the pooled map is the trunk's last stage as
# timm computes it (stride 14, 384 channels; 16 x 16 at 224), not the dense pyramid's resampled stride-16 level.
_base_ = [
    '../_base_/models/image-classifier.py', '../_base_/datasets/imagenet.py', '../_base_/schedules/imagenet_300e.py',
    '../_base_/optimizers/adamw_in1k.py', '../_base_/default_runtime_cls.py'
]
model = dict(
    backbone=dict(type='vitdense.Sequencer2D', arch='s', pyramid=False, drop_path_rate=0.1, out_indices=(3,)),
    head=dict(in_channels=384))
optim_wrapper = dict(clip_grad=None)
