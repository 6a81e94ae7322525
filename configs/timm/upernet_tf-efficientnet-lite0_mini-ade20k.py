# UperNet on a timm EfficientNet-Lite0 (levels 1-4: strides 4/8/16/32) on the bundled real mini ADE20K, from
# scratch, 256x256 crops; ImageNet weights via model.backbone.init_cfg as in the Mask R-CNN mini config.
_base_ = [
    '../_base_/models/upernet.py', '../_base_/datasets/ade20k_mini.py', '../_base_/schedules/mini_seg.py',
    '../_base_/optimizers/adamw_swin-seg.py', '../_base_/default_runtime_seg.py'
]
model = dict(
    data_preprocessor=dict(size=(256, 256), mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(type='vitdense.TimmBackbone', model_name='tf_efficientnet_lite0', out_indices=(1, 2, 3, 4),
                  out_norm=True, drop_path_rate=0.1),
    decode_head=dict(in_channels=[24, 40, 112, 320]),
    auxiliary_head=dict(in_channels=112))
optim_wrapper = dict(optimizer=dict(lr=3e-4))
