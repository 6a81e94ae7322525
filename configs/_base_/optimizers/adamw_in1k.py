# ImageNet-1k pretraining recipe shared by Swin, ConvNeXt, DeiT-style ViTs and their relatives: AdamW,
# lr 5e-4 x 1024 / 512 = 1e-3 for 1024 images per iteration, wd 0.05, no weight decay on norms, biases,
# other 1-D parameters and position tables, gradient clipping at 5 (Swin).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       custom_keys={'absolute_pos_embed': dict(decay_mult=0.0),
                                    'relative_position_bias_table': dict(decay_mult=0.0),
                                    'pos_embed': dict(decay_mult=0.0), 'cls_token': dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=5.0))
