# Sequencer2D-L (drop path 0.3, a choice: no published detection recipe).
_base_ = './mask-rcnn_sequencer2d-s_fpn_ms-crop-3x_coco.py'
pretrained = 'checkpoints/sequencer2d_l.pth'
model = dict(backbone=dict(arch='l', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)))
