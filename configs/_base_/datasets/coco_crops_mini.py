# The mini classification set: instance crops of the bundled real mini COCO, made by
#   python tools/make_coco_crops.py        (-> data/mini/coco_crops_mini/{train,val}/<category>/*.jpg)
# 112 px square crops, 5 classes (person, horse, cat, remote, truck), 36 train / 18 val. 96 px training
# crops, flips; evaluation on the centre 96 px. Top-1 only (top-5 of 5 classes says nothing).
data_root = '{{ fileDirname }}/../../../data/mini/coco_crops_mini/'
num_classes = 5
train_pipeline = [
    dict(type='vitdense.LoadImage'),
    dict(type='RandomResizedCrop', scale=96, crop_ratio_range=(0.6, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile', _scope_='vitdense'),  # vitdense.LoadImage, as inferencers name it
    dict(type='ResizeEdge', scale=96, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=96),
    dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix=dict(img_path='train'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix=dict(img_path='val'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1,))
test_evaluator = val_evaluator
