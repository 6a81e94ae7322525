# Sequencer2D-S Mask R-CNN 3x, multi-scale + crop (the Swin 3x augmentation), Swin's AdamW recipe.
_base_ = [
    '../_base_/models/mask-rcnn_sequencer2d-s_fpn.py', '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/det_3x.py', '../_base_/optimizers/adamw_swin-det.py', '../_base_/default_runtime_det.py'
]
