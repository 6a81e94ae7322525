# Sequencer2D-S Cascade Mask R-CNN: no published recipe; the family's Mask R-CNN recipe (the sibling config)
# with the cascade heads. The same holds for every size and the 3x configs of this family.
_base_ = ['./mask-rcnn_sequencer2d-s_fpn_1x_coco.py', '../_base_/models/cascade-mask-rcnn_fpn.py']
model = {{_base_.cascade_mask_rcnn}}
