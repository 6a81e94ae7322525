# Mask2Former on a plain ViT-S/16 (DeiT-S layout) with ViTDet's simple feature pyramid, global attention, the
# position embedding resampled at load time to the 512x512 crop grid; mmseg's Mask2Former recipe (backbone lr
# x0.1), no weight decay on the position embedding and class token: a vitdense choice.
_base_ = './mask2former.py'
pretrained = 'checkpoints/deit_small_patch16_224-cd65a155.pth'
model = dict(
    backbone=dict(type='vitdense.VisionTransformer', arch='small', img_size=512, drop_path_rate=0.1,
                  out_indices=(0, 1, 2, 3), init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 384]))
backbone_embed_multi = dict(lr_mult=0.1, decay_mult=0.0)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'pos_embed': backbone_embed_multi,
                                                     'cls_token': backbone_embed_multi}))
