# Mask R-CNN + FPN on the hybrid R50+ViT-B/16 (Dosovitskiy et al. 2021; timm vit_base_r50_s16_*): ResNet stages
# 1-2 give strides 4 / 8, the transformer's token map stride 16 and its max-pool stride 32 (channels 256, 512,
# 768, 768). ViTDet-style attention: windows of 14 tokens except blocks 2, 5, 8, 11 (global), so no class
# token. The checkpoint is timm's vit_base_r50_s16_384.orig_in21k_ft_in1k state_dict (torch.save); its 24x24
# position embedding is resampled to each input's grid at run time. timm's hybrids normalise with mean = std
# = 0.5 (127.5 on 0-255 pixels), not ImageNet's statistics.
_base_ = './mask-rcnn_fpn.py'
pretrained = 'checkpoints/vit_base_r50_s16_384.orig_in21k_ft_in1k.pth'
model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(type='vitdense.HybridVisionTransformer', arch='vit_base_r50_s16', img_size=384,
                  drop_path_rate=0.1, with_cls_token=False, window_size=14, global_attn_indexes=(2, 5, 8, 11),
                  out_indices=(0, 1, 2, 3), frozen_stages=-1, with_cp=False,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[256, 512, 768, 768]))
