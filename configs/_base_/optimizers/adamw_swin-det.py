# Swin detection recipe: AdamW lr 1e-4, wd 0.05, no weight decay on norms and position tables.
# MergedGroupsOptimWrapperConstructor: mmengine's default constructor with its one-group-per-parameter output
# merged by equal settings (2 groups instead of ~220: each parameter's update is unchanged).
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='vitdense.MergedGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'absolute_pos_embed': dict(decay_mult=0.), 'relative_position_bias_table': dict(decay_mult=0.),
        'norm': dict(decay_mult=0.)}))
