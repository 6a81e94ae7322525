# Swin-B Mask2Former with the ImageNet-1k 224 window-7 weights at 512x512 (vitdense's Swin-B weights); mmseg's
# Swin-B numbers are for 384 window-12 weights at 640x640 (52.4 mIoU in1k), not this config.
_base_ = './mask2former_swin-t-p4-w7_8xb2-160k_ade20k-512x512.py'
pretrained = 'checkpoints/swin_base_patch4_window7_224.pth'
model = dict(backbone=dict(arch='base', init_cfg=dict(checkpoint=pretrained)),
             decode_head=dict(in_channels=[128, 256, 512, 1024]))
