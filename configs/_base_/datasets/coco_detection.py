# COCO 2017 boxes only (no masks needed in the annotation file), standard layout data/coco/{annotations,
# train2017,val2017}: mmdet's recipe, training on images loaded by vitdense.LoadImage.
_base_ = 'mmdet::_base_/datasets/coco_detection.py'
train_pipeline = [
    dict(type='vitdense.LoadImage'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
# evaluation reads images as training does: mmdet's test pipeline after its loader, with vitdense.LoadImage
# under the name mmdet's / mmseg's inferencers look for (see vitdense/datasets/transforms.py)
test_pipeline = [dict(type='LoadImageFromFile', _scope_='vitdense', backend_args=None), *_base_.test_pipeline[1:]]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
