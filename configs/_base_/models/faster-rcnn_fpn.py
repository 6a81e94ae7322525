# Faster R-CNN + FPN (mmdet's) with the backbone left to the including config: boxes only, no mask branch.
_base_ = 'mmdet::_base_/models/faster-rcnn_r50_fpn.py'
model = dict(backbone=dict(_delete_=True))
