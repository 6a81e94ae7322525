# ViT-Adapter's UperNet ADE20K recipe for DeiT-sized ViTs (Chen et al. 2023): AdamW lr 6e-5, wd 0.01,
# layer-wise lr decay 0.95 over num_depths = depth + 2 (patch/pos embed 0, block i i + 1, the rest last).
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='vitdense.LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise'))
