# Swin-T Cascade Mask R-CNN 3x (published: 50.4 box / 43.7 mask AP, 86M params, 745 GFLOPs at 1280x800): the
# official recipe is the Mask R-CNN 3x one (AdamW 1e-4, wd 0.05, drop path 0.2, multi-scale + crop) with these heads.
_base_ = ['./mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py', '../_base_/models/cascade-mask-rcnn_fpn.py']
model = {{_base_.cascade_mask_rcnn}}
