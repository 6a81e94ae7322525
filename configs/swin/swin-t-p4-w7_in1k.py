# Swin-T ImageNet-1k classifier, 300 epochs at 224 (Liu et al. 2021: 81.3 top-1): drop path 0.2, AdamW 1e-3 for
# 1024 images, wd 0.05, 20 warm-up epochs, cosine, grad clip 5, label smoothing 0.1, Mixup / CutMix, RandAugment.
# Fine-tune from an ImageNet checkpoint instead: --cfg-options model.backbone.init_cfg.type=Pretrained
# model.backbone.init_cfg.checkpoint=PATH (any Swin layout; see tools/convert_checkpoint.py).
# always_shift=False: classification windows (the 7x7 last stage is one unshifted window at 224), the network
# timm / official Swin ImageNet weights were trained as; the detection / segmentation configs keep mmdet's.
_base_ = [
    '../_base_/models/image-classifier.py', '../_base_/datasets/imagenet.py', '../_base_/schedules/imagenet_300e.py',
    '../_base_/optimizers/adamw_in1k.py', '../_base_/default_runtime_cls.py'
]
model = dict(
    backbone=dict(type='vitdense.SwinTransformer', arch='tiny', window_size=7, always_shift=False,
                  drop_path_rate=0.2, out_indices=(3,)),
    head=dict(in_channels=768))
