# COCO 2017 instances in the standard layout: data/coco/{annotations,train2017,val2017}.
_base_ = 'mmdet::_base_/datasets/coco_instance.py'
