# COCO 2017 instances in the standard layout: data/coco/{annotations,train2017,val2017}.
# mmdet's recipe, loading images with vitdense.LoadImage (gray / RGBA / 16-bit files become 3-channel 8-bit,
# unreadable files stop with one line naming them).
_base_ = 'mmdet::_base_/datasets/coco_instance.py'
train_pipeline = [
    dict(type='vitdense.LoadImage'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')]
test_pipeline = [
    dict(type='vitdense.LoadImage'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
