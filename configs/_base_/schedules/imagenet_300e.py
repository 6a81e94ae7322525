# 300 epochs, linear warm-up over the first 20 (per iteration), cosine to 1e-5 (Swin / ConvNeXt; DeiT warms up
# for 5). The lr in the optimizer base is for 1024 images per iteration: --auto-scale-lr rescales it.
max_epochs = 300
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=20, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=20)]
auto_scale_lr = dict(enable=False, base_batch_size=1024)
