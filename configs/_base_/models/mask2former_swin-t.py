# Mask2Former on Swin-T (window 7, drop path 0.3), mmseg's Swin-T recipe: backbone lr x0.1, no weight decay on
# its norms and position tables.
_base_ = './mask2former.py'
pretrained = 'checkpoints/swin_tiny_patch4_window7_224.pth'
model = dict(
    backbone=dict(type='vitdense.SwinTransformer', arch='tiny', window_size=7, drop_path_rate=0.3,
                  out_indices=(0, 1, 2, 3), init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[96, 192, 384, 768]))
backbone_embed_multi = dict(lr_mult=0.1, decay_mult=0.0)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'absolute_pos_embed': backbone_embed_multi, 'relative_position_bias_table': backbone_embed_multi}))
