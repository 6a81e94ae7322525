# Mask2Former on ConvNeXt-T (drop path 0.4 as for UperNet), on mmseg's Mask2Former recipe (backbone lr x0.1,
# no weight decay on norms): a vitdense choice, no published ConvNeXt Mask2Former ADE20K recipe in mmseg.
_base_ = './mask2former.py'
pretrained = 'checkpoints/convnext_tiny_1k_224.pth'
model = dict(
    backbone=dict(type='vitdense.ConvNeXt', arch='tiny', drop_path_rate=0.4, out_indices=(0, 1, 2, 3),
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]))
