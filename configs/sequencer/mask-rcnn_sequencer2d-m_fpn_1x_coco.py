# Sequencer2D-M (drop path 0.2, a choice: no published detection recipe).
_base_ = './mask-rcnn_sequencer2d-s_fpn_1x_coco.py'
pretrained = 'checkpoints/sequencer2d_m.pth'
model = dict(backbone=dict(arch='m', drop_path_rate=0.2, init_cfg=dict(checkpoint=pretrained)))
