# ConvNeXt detection recipe: AdamW lr 1e-4, wd 0.05, layer-wise lr decay 0.95 (depths from the backbone);
# no weight decay on 1-D parameters (norms, biases, layer scales) and position tables.
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='vitdense.LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise'))
