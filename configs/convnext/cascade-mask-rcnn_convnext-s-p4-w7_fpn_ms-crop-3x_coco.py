# ConvNeXt-S Cascade Mask R-CNN 3x (published: 51.9 box / 45.0 mask AP, 108M params, 827 GFLOPs): AdamW 2e-4,
# layer decay 0.7, drop path 0.6.
_base_ = ['./mask-rcnn_convnext-s-p4-w7_fpn_ms-crop-3x_coco.py', '../_base_/models/cascade-mask-rcnn_fpn.py']
model = {{_base_.cascade_mask_rcnn}}
optim_wrapper = dict(optimizer=dict(lr=2e-4), paramwise_cfg=dict(decay_rate=0.7))
