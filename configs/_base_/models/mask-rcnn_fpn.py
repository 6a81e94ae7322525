# Mask R-CNN + FPN (mmdet's) with the backbone left to the including config.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
model = dict(backbone=dict(_delete_=True))
