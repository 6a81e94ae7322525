# ConvNeXt-B Cascade Mask R-CNN 3x (published: 52.7 box / 45.6 mask AP, 146M params, 964 GFLOPs): AdamW 2e-4,
# layer decay 0.8, drop path 0.7.
_base_ = ['./mask-rcnn_convnext-b-p4-w7_fpn_ms-crop-3x_coco.py', '../_base_/models/cascade-mask-rcnn_fpn.py']
model = {{_base_.cascade_mask_rcnn}}
optim_wrapper = dict(optimizer=dict(lr=2e-4), paramwise_cfg=dict(decay_rate=0.8))
