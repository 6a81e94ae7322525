# ConvNeXt-T UperNet ADE20K 160k (published: 46.0 / 46.7 mIoU, 60M params, 939 GFLOPs); sliding-window test.
_base_ = [
    '../_base_/models/upernet_convnext-t.py', '../_base_/datasets/ade20k.py', '../_base_/schedules/seg_160k.py',
    '../_base_/optimizers/adamw_layer-decay_seg.py', '../_base_/default_runtime_seg.py'
]
model = dict(test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
