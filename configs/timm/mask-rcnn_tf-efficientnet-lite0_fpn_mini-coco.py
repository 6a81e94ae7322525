# Mask R-CNN + FPN on a timm EfficientNet-Lite0 (levels 1-4: strides 4/8/16/32, 24/40/112/320 channels, frozen
# BatchNorm statistics) on the bundled real mini COCO, from scratch. The ImageNet weights (mean = std = 127.5):
#   --cfg-options model.backbone.init_cfg.type=Pretrained model.backbone.init_cfg.checkpoint=PATH
_base_ = [
    '../_base_/models/mask-rcnn_fpn.py', '../_base_/datasets/coco_mini.py',
    '../_base_/schedules/mini_det.py', '../_base_/optimizers/adamw_swin-det.py'
]
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(type='vitdense.TimmBackbone', model_name='tf_efficientnet_lite0', out_indices=(1, 2, 3, 4),
                  out_norm=True, norm_eval=True, drop_path_rate=0.1),
    neck=dict(in_channels=[24, 40, 112, 320]))
optim_wrapper = dict(optimizer=dict(lr=3e-4))
