# ImageNet classifier around any vitdense backbone: its last requested map (out_indices=(3,), stride 32, after
# the backbone's output norm), global average pooling, one linear layer. Leaves set the backbone and
# head.in_channels (= backbone.num_features[out_index]).
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(num_classes=1000, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           to_rgb=True),
    backbone=dict(out_indices=(3,)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=1000, in_channels=768, topk=(1, 5),
              loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
              init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.0)),
    # Mixup 0.8 / CutMix 1.0, one of the two per batch (the DeiT / Swin / ConvNeXt recipe)
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
