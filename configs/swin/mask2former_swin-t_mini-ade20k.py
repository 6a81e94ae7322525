# Swin-T Mask2Former on the bundled real mini ADE20K (2 pairs), from scratch, 256x256 crops: the data and
# schedule of configs/_base_/{datasets/ade20k_mini,schedules/mini_seg}.py, restated because Mask2Former's base
# is a whole mmseg config.
_base_ = './mask2former_swin-t-p4-w7_8xb2-160k_ade20k-512x512.py'
data_root = '{{ fileDirname }}/../../data/mini/ade20k_mini/ADEChallengeData2016'
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
model = dict(data_preprocessor=dict(size=crop_size), backbone=dict(init_cfg=dict(checkpoint=None)))
optim_wrapper = dict(optimizer=dict(lr=3e-4))
max_iters = 40
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=5)]
default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=2, save_best=None))
randomness = dict(seed=0)
