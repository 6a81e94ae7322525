# ConvNeXt-T Mask2Former ADE20K 160k on mmseg's Mask2Former recipe (a vitdense choice; no published number).
_base_ = '../_base_/models/mask2former_convnext-t.py'
