# Swin-T Mask2Former ADE20K 160k, mmseg's recipe (mmseg publishes 47.7 mIoU for its Swin-T).
_base_ = '../_base_/models/mask2former_swin-t.py'
