# Swin-S Cascade Mask R-CNN 3x (published: 51.9 box / 45.0 mask AP, 107M params, 838 GFLOPs; drop path 0.2).
_base_ = ['./mask-rcnn_swin-s-p4-w7_fpn_ms-crop-3x_coco.py', '../_base_/models/cascade-mask-rcnn_fpn.py']
model = {{_base_.cascade_mask_rcnn}}
