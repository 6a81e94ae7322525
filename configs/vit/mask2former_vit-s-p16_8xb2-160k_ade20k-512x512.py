# ViT-S/16 (DeiT-S weights) Mask2Former ADE20K 160k on mmseg's Mask2Former recipe, sliding-window test as for
# UperNet (a vitdense choice; no published plain-ViT-S Mask2Former number).
_base_ = '../_base_/models/mask2former_vit-s.py'
model = dict(test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
