# Swin-T classifier on the mini COCO-crops set (5 classes, 96 px), from scratch: the CPU check that the
# classification path trains, evaluates (top-1) and fine-tunes like the dense ones. Start from ImageNet weights
# with --cfg-options model.backbone.init_cfg.type=Pretrained model.backbone.init_cfg.checkpoint=PATH.
# always_shift=False: classification windows, as the ImageNet weights were trained (see swin-t-p4-w7_in1k.py).
_base_ = [
    '../_base_/models/image-classifier.py', '../_base_/datasets/coco_crops_mini.py',
    '../_base_/schedules/mini_cls.py', '../_base_/optimizers/adamw_in1k.py'
]
model = dict(
    data_preprocessor=dict(num_classes=5),
    backbone=dict(type='vitdense.SwinTransformer', arch='tiny', window_size=7, always_shift=False,
                  drop_path_rate=0.1, out_indices=(3,)),
    head=dict(num_classes=5, in_channels=768, topk=(1,),
              loss=dict(_delete_=True, type='CrossEntropyLoss', loss_weight=1.0)),
    train_cfg=dict(_delete_=True))  # no Mixup / CutMix on 36 images
optim_wrapper = dict(optimizer=dict(lr=2e-4))
