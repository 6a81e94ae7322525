# ViTDet detection recipe (Li et al. 2022, ViT-B): AdamW lr 1e-4, betas (0.9, 0.999), wd 0.1, layer-wise lr
# decay 0.7: patch/pos embed depth 0, block i depth i + 1, pyramid / output norms / neck / heads depth 13
# (num_depths = 12 + 2), lr x 0.7 ** (13 - depth). No weight decay on 1-D parameters, pos embed, class token.
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='vitdense.LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise'))
