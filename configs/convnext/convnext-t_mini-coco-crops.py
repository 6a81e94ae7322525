# ConvNeXt-T classifier on the mini COCO-crops set (5 classes, 96 px), from scratch; see the Swin-T one.
_base_ = [
    '../_base_/models/image-classifier.py', '../_base_/datasets/coco_crops_mini.py',
    '../_base_/schedules/mini_cls.py', '../_base_/optimizers/adamw_in1k.py'
]
model = dict(
    data_preprocessor=dict(num_classes=5),
    backbone=dict(type='vitdense.ConvNeXt', arch='tiny', drop_path_rate=0.1, out_indices=(3,)),
    head=dict(num_classes=5, in_channels=768, topk=(1,),
              loss=dict(_delete_=True, type='CrossEntropyLoss', loss_weight=1.0)),
    train_cfg=dict(_delete_=True))
optim_wrapper = dict(optimizer=dict(lr=2e-4), clip_grad=None)
