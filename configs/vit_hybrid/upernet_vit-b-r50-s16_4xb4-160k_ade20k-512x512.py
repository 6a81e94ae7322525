# R50+ViT-B/16 hybrid UperNet ADE20K 160k with ViT-Adapter's recipe (lr 6e-5, wd 0.01, sliding-window test).
# Layer decay 0.96 over the hybrid's 18 depths keeps the stem's lr factor at ViT-Adapter's patch-embedding one
# (0.96 ** 17 = 0.50 vs 0.95 ** 13 = 0.51).
_base_ = [
    '../_base_/models/upernet_vit-b-r50.py', '../_base_/datasets/ade20k.py', '../_base_/schedules/seg_160k.py',
    '../_base_/optimizers/adamw_vit-adapter-layer-decay-0.95_seg.py', '../_base_/default_runtime_seg.py'
]
model = dict(test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.96))
