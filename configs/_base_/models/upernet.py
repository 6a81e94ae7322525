# UperNet + FCN auxiliary head (mmseg's), BN instead of SyncBN so one process / CPU works; the
# launcher turns BN into SyncBN for multi-GPU runs (see tools/train.py --sync-bn).
_base_ = 'mmseg::_base_/models/upernet_r50.py'
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=(512, 512)),  # pad batches to the crop size
    pretrained=None,  # backbones load ImageNet weights through their own init_cfg
    backbone=dict(_delete_=True),
    decode_head=dict(num_classes=150, norm_cfg=norm_cfg),
    auxiliary_head=dict(num_classes=150, norm_cfg=norm_cfg))
