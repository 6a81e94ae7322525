# ViT-Adapter-S Cascade Mask R-CNN: the family's Mask R-CNN recipe (the sibling config) with vitdense's cascade
# heads (the official 4conv1fc GIoU heads). The same holds for every size, weights and schedule of this family.
# czczup/ViT-Adapter's Cascade Mask R-CNN 3x: S 51.5 box / 44.3 mask AP, 86M; B 52.1 / 44.8, 158M.
_base_ = ['./mask-rcnn_vit-adapter-s_fpn_1x_coco.py', '../_base_/models/cascade-mask-rcnn_fpn.py']
model = {{_base_.cascade_mask_rcnn}}
