# Swin segmentation recipe: AdamW lr 6e-5, wd 0.01, no weight decay on norms and position tables.
_base_ = './adamw_swin-det.py'
optim_wrapper = dict(optimizer=dict(lr=6e-5, weight_decay=0.01))
