_base_ = ['./mask-rcnn_vit-adapter-dinov2-s-p14_fpn_ms-crop-3x_coco.py', '../_base_/models/cascade-mask-rcnn_fpn.py']
model = {{_base_.cascade_mask_rcnn}}
