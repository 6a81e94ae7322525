# Swin-T Mask R-CNN on the bundled real mini COCO (7 images), from scratch: the main job on a CPU.
# To start from ImageNet weights, set init_cfg=dict(type='Pretrained', checkpoint=PATH) here (and lower the lr).
_base_ = [
    '../_base_/models/mask-rcnn_swin-t_fpn.py', '../_base_/datasets/coco_mini.py',
    '../_base_/schedules/mini_det.py', '../_base_/optimizers/adamw_swin-det.py'
]
# CPU speed (README, Performance): vitdense.RoIAlign pools what mmcv's RoIAlign pools (equal to float rounding)
# on all threads, forward and backward; torch's fused AdamW (one kernel per parameter list: the same update to
# float rounding) over the merged parameter groups; mixed-precision training as the Swin authors' detection
# recipe (apex float16 there, bfloat16 autocast of backbone, neck and heads here; box arithmetic, NMS, RoI
# pooling, losses and the evaluation stay float32).
# Float32 training: --cfg-options optim_wrapper.type=OptimWrapper
model = dict(
    backbone=dict(init_cfg=dict(checkpoint=None)),
    roi_head=dict(
        bbox_roi_extractor=dict(type='vitdense.SingleRoIExtractor', roi_layer=dict(type='vitdense.RoIAlign')),
        mask_roi_extractor=dict(type='vitdense.SingleRoIExtractor', roi_layer=dict(type='vitdense.RoIAlign'))))
optim_wrapper = dict(type='vitdense.BF16AutocastOptimWrapper', optimizer=dict(lr=3e-4, fused=True))
