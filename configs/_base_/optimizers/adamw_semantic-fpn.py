# The PVT / PoolFormer Semantic FPN recipe: AdamW lr 2e-4, wd 1e-4 (mmseg's poolformer configs run it as
# 40k x 32 images, vitdense's Semantic FPN configs as 80k x 16), no weight decay on norms and position tables.
_base_ = './adamw_swin-seg.py'
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=1e-4))
