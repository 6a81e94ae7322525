# The bundled real mini COCO (7 val2017 images, 63 instances, data/mini/coco_val2017_mini): train and
# evaluate on the same images, at a small scale, so a CPU run shows the model learning within minutes.
_base_ = './coco_instance.py'
data_root = '{{ fileDirname }}/../../../data/mini/coco_val2017_mini/'
img_scale = (512, 384)
train_pipeline = [
    dict(type='vitdense.LoadImage'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='PackDetInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile', _scope_='vitdense'),  # vitdense.LoadImage, as inferencers name it
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root=data_root, ann_file='instances_mini.json', data_prefix=dict(img=''),
                 filter_cfg=dict(filter_empty_gt=True, min_size=0), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='instances_mini.json', data_prefix=dict(img=''),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'instances_mini.json', metric=['bbox', 'segm'])
test_evaluator = val_evaluator
