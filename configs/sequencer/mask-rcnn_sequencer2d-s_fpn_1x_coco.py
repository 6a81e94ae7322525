# Sequencer2D-S Mask R-CNN 1x. No published Mask R-CNN recipe for Sequencer: Swin's AdamW recipe (lr 1e-4,
# wd 0.05, no decay on norms) rather than per-block layer decay, which over 18-36 blocks would leave the
# stem at 0.95^19..0.95^37 of the lr; the new pyramid layers train at the full lr either way.
_base_ = [
    '../_base_/models/mask-rcnn_sequencer2d-s_fpn.py', '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/det_1x.py', '../_base_/optimizers/adamw_swin-det.py', '../_base_/default_runtime_det.py'
]
