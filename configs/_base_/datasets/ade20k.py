# ADE20K (SceneParsing-150) in the standard layout: data/ade/ADEChallengeData2016/{images,annotations}/...
# mmseg's recipe, training on images loaded by vitdense.LoadImage (see the README's Reliability section).
_base_ = 'mmseg::_base_/datasets/ade20k.py'
train_pipeline = [
    dict(type='vitdense.LoadImage'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size={{_base_.crop_size}}, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
# evaluation reads images as training does: mmseg's test pipeline after its loader, with vitdense.LoadImage
# under the name mmdet's / mmseg's inferencers look for (see vitdense/datasets/transforms.py)
test_pipeline = [dict(type='LoadImageFromFile', _scope_='vitdense', backend_args=None), *_base_.test_pipeline[1:]]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
