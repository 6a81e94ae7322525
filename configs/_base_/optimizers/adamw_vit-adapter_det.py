# ViT-Adapter's Mask R-CNN recipe with DeiT weights (Chen et al. 2023, czczup/ViT-Adapter): AdamW lr 1e-4,
# wd 0.05, no layer decay; no weight decay on names containing level_embed, pos_embed, norm or bias (mmengine
# matches custom_keys as substrings, as mmcv 1.x did for the original configs).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'level_embed': dict(decay_mult=0.), 'pos_embed': dict(decay_mult=0.), 'norm': dict(decay_mult=0.),
        'bias': dict(decay_mult=0.)}))
