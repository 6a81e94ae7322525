# Semantic FPN (mmseg's FPN neck + FPNHead), 150 ADE20K classes; BN instead of SyncBN so one process / CPU
# works (tools/train.py --sync-bn converts it for multi-GPU runs). Backbone bases set the backbone and the
# neck's in_channels.
_base_ = 'mmseg::_base_/models/fpn_r50.py'
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=(512, 512)),  # pad batches to the crop size
    pretrained=None,  # backbones load ImageNet weights through their own init_cfg
    backbone=dict(_delete_=True),
    decode_head=dict(num_classes=150, norm_cfg=norm_cfg))
