# Semantic FPN (mmseg's FPN neck + FPNHead) on Sequencer2D-S, 150 ADE20K classes; BN instead of SyncBN so
# one process / CPU works (tools/train.py --sync-bn converts it for multi-GPU runs).
_base_ = 'mmseg::_base_/models/fpn_r50.py'
norm_cfg = dict(type='BN', requires_grad=True)
pretrained = 'checkpoints/sequencer2d_s.pth'
model = dict(
    data_preprocessor=dict(size=(512, 512)),  # pad batches to the crop size
    pretrained=None,  # the backbone loads ImageNet weights through its own init_cfg
    backbone=dict(_delete_=True, type='vitdense.Sequencer2D', arch='s', drop_path_rate=0.1,
                  out_indices=(0, 1, 2, 3), init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 192, 384, 384]),
    decode_head=dict(num_classes=150, norm_cfg=norm_cfg))
