# Swin-T Faster R-CNN 1x on your own COCO-format dataset, boxes only (configs/swin/faster-rcnn_swin-t-p4-w7_fpn_1x_coco.py:
# the Swin-T Mask R-CNN 1x recipe without the mask branch), masks neither loaded nor evaluated, so a json without
# "segmentation" works. Copy this file next to it, edit the block "your dataset"; class names must be the json's
# category names. The evaluator prints per-class AP (classwise=True).
_base_ = '../swin/faster-rcnn_swin-t-p4-w7_fpn_1x_coco.py'

# --- your dataset ---
data_root = 'data/my_coco/'
classes = ('class_a', 'class_b')
train_ann, train_img = 'annotations/train.json', 'images/train/'
val_ann, val_img = 'annotations/val.json', 'images/val/'
# ---

metainfo = dict(classes=classes)
model = dict(roi_head=dict(bbox_head=dict(num_classes=len(classes))))
train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo, ann_file=train_ann,
                                     data_prefix=dict(img=train_img)))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo, ann_file=val_ann,
                                   data_prefix=dict(img=val_img)))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + val_ann, metric='bbox', classwise=True)
test_evaluator = val_evaluator
