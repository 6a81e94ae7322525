# Swin-T Cascade Mask R-CNN on the bundled real mini COCO, from scratch: the Mask R-CNN mini config with the
# cascade heads (tests/tools/test_train_test.py trains it briefly and checks the box AP moves).
_base_ = ['./mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py', '../_base_/models/cascade-mask-rcnn_fpn.py']
model = {{_base_.cascade_mask_rcnn}}
