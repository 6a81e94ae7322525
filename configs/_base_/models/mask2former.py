# Mask2Former ADE20K 160k: mmseg's recipe as it ships (mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-
# 512x512.py: mmseg's Mask2FormerHead on mmdet's MSDeformAttn pixel decoder, 100 queries, 9 decoder layers;
# AdamW lr 1e-4, wd 0.05, grad clip 0.01, backbone lr x0.1, no weight decay on norms and query / level
# embeddings; poly 160k; 8 x 2 images; multi-scale short-edge resize + 512 crop), with vitdense's runtime
# (registries, reliability hooks, training images through vitdense.LoadImage). That file is a whole config, so
# it is the only base: backbone leaves set the backbone and decode_head.in_channels.
_base_ = 'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['mmdet.models', 'vitdense.models', 'vitdense.engine', 'vitdense.datasets'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='vitdense.SafeCheckpointHook'), dict(type='vitdense.RandomStateHook'),
                dict(type='vitdense.FiniteLossHook'), dict(type='vitdense.SegLabelCheckHook')]
default_hooks = dict(checkpoint=dict(type='vitdense.AtomicCheckpointHook'))
crop_size = (512, 512)
train_pipeline = [
    dict(type='vitdense.LoadImage'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomChoiceResize', scales=[int(512 * x * 0.1) for x in range(5, 21)],
         resize_type='ResizeShortestEdge', max_size=2048),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
# evaluation reads images as training does: mmseg's test pipeline after its loader, with vitdense.LoadImage
# under the name mmdet's / mmseg's inferencers look for (see vitdense/datasets/transforms.py)
test_pipeline = [dict(type='LoadImageFromFile', _scope_='vitdense', backend_args=None), *_base_.test_pipeline[1:]]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
model = dict(backbone=dict(_delete_=True))
