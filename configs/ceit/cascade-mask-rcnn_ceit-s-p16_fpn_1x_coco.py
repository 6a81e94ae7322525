_base_ = ['./mask-rcnn_ceit-s-p16_fpn_1x_coco.py', '../_base_/models/cascade-mask-rcnn_fpn.py']
model = {{_base_.cascade_mask_rcnn}}
