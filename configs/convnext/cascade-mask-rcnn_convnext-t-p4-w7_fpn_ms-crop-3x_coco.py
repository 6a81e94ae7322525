# ConvNeXt-T Cascade Mask R-CNN 3x (published: 50.4 box / 43.7 mask AP, 86M params, 741 GFLOPs at 1280x800).
# The official recipe differs from Mask R-CNN's in the optimizer only: AdamW lr 2e-4 (not 1e-4) and layer-wise
# decay 0.7 (not 0.95); drop path 0.4 as in the sibling.
_base_ = ['./mask-rcnn_convnext-t-p4-w7_fpn_ms-crop-3x_coco.py', '../_base_/models/cascade-mask-rcnn_fpn.py']
model = {{_base_.cascade_mask_rcnn}}
# the Cascade recipe's optimizer
optim_wrapper = dict(optimizer=dict(lr=2e-4), paramwise_cfg=dict(decay_rate=0.7))
