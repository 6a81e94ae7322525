# Swin-T Cascade Mask R-CNN 1x: its Mask R-CNN 1x sibling (AdamW 1e-4, drop path 0.1, single scale) with the
# cascade heads. The published 1x (48.1 box / 41.7 mask AP, 86M params, 745 GFLOPs) trained with the 3x
# configs' multi-scale + crop augmentation and drop path 0.0.
_base_ = ['./mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', '../_base_/models/cascade-mask-rcnn_fpn.py']
model = {{_base_.cascade_mask_rcnn}}
