# BOAT-Swin-T ImageNet-1k classifier with Swin-T's 300-epoch recipe (Yu et al. 2022: 82.3 top-1): drop path 0.2,
# AdamW 1e-3 for 1024 images, wd 0.05, 20 warm-up epochs, cosine, grad clip 5, Mixup / CutMix, RandAugment.
# layout='pytorch-boat' and always_shift=False reproduce the public classification weights' model
# (vitdense.BOATClassifier loads them with their head).
_base_ = [
    '../_base_/models/image-classifier.py', '../_base_/datasets/imagenet.py', '../_base_/schedules/imagenet_300e.py',
    '../_base_/optimizers/adamw_in1k.py', '../_base_/default_runtime_cls.py'
]
model = dict(
    backbone=dict(type='vitdense.BOATSwin', arch='tiny', window_size=7, layout='pytorch-boat', always_shift=False,
                  drop_path_rate=0.2, out_indices=(3,)),
    head=dict(in_channels=768))
