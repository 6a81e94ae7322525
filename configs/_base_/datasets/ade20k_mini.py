# The bundled real mini ADE20K (data/mini/ade20k_mini: one training and one validation pair, 150 classes).
# Mini runs train on both pairs and evaluate on the validation one, on small crops.
_base_ = './ade20k.py'
data_root = '{{ fileDirname }}/../../../data/mini/ade20k_mini/ADEChallengeData2016'
crop_size = (256, 256)
train_pipeline = [
    dict(type='vitdense.LoadImage'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(512, 256), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile', _scope_='vitdense'),  # vitdense.LoadImage, as inferencers name it
    dict(type='Resize', scale=(512, 256), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='ConcatDataset', datasets=[
        dict(type='ADE20KDataset', data_root=data_root, pipeline=train_pipeline,
             data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')),
        dict(type='ADE20KDataset', data_root=data_root, pipeline=train_pipeline,
             data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'))]))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
