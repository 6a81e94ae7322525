# ViT-Adapter-S (DeiT-S weights) UperNet ADE20K 160k, the paper's recipe: AdamW 6e-5, wd 0.01, layer decay 0.95,
# drop path 0.2, global attention, sliding-window test 512 / 341. Paper: 46.2 mIoU (47.1 ms), 58M params.
_base_ = [
    '../_base_/models/upernet_vit-adapter-s.py', '../_base_/datasets/ade20k.py', '../_base_/schedules/seg_160k.py',
    '../_base_/optimizers/adamw_vit-adapter-layer-decay-0.95_seg.py', '../_base_/default_runtime_seg.py'
]
model = dict(test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
