# 80k iterations, linear warm-up over 1500, then poly (power 1) decay to 0 (16 images per iteration).
_base_ = './seg_160k.py'
train_cfg = dict(max_iters=80000, val_interval=8000)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=80000, by_epoch=False)]
default_hooks = dict(checkpoint=dict(interval=8000))
