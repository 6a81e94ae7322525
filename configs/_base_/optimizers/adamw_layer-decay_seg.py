# ConvNeXt segmentation recipe: AdamW lr 1e-4, wd 0.05, stage-wise lr decay 0.9.
_base_ = './adamw_layer-decay_det.py'
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise'))
