_base_ = ['./mask-rcnn_convnext-b-p4-w7_fpn_1x_coco.py', '../_base_/models/cascade-mask-rcnn_fpn.py']
model = {{_base_.cascade_mask_rcnn}}
optim_wrapper = dict(optimizer=dict(lr=2e-4), paramwise_cfg=dict(decay_rate=0.8))
