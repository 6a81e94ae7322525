# Swin-S Mask2Former, mmseg's recipe (mmseg publishes 51.0 mIoU for its Swin-S).
_base_ = './mask2former_swin-t-p4-w7_8xb2-160k_ade20k-512x512.py'
pretrained = 'checkpoints/swin_small_patch4_window7_224.pth'
model = dict(backbone=dict(arch='small', init_cfg=dict(checkpoint=pretrained)))
