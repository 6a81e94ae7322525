# Cascade Mask R-CNN: no published recipe; the family's Mask R-CNN recipe (the sibling config) with the cascade
# heads.
_base_ = ['./mask-rcnn_dinov2-s-p14-w14_fpn_1x_coco.py', '../_base_/models/cascade-mask-rcnn_fpn.py']
model = {{_base_.cascade_mask_rcnn}}
