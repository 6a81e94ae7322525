# UperNet (+ FCN auxiliary head) on ViT-Adapter-S (Chen et al., ICLR 2023): a DeiT-S ViT (timm's
# deit_small_patch16_224 through vitdense.TimmViT, no class token, global attention in every block, as in the
# paper's segmentation configs) with the adapter's spatial prior module, 4 interactions and its 4-level
# pyramid (384 channels each). The 224 checkpoint's 14x14 position embedding is resampled to each input's grid
# at run time (the paper's pretrain_size=224).
_base_ = './upernet.py'
pretrained = 'checkpoints/deit_small_patch16_224-cd65a155.pth'
model = dict(
    backbone=dict(type='vitdense.ViTAdapter', model_name='deit_small_patch16_224',
                  model_kwargs=dict(class_token=False), window_size=0,
                  interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]], conv_inplane=64, deform_num_heads=6,
                  n_points=4, deform_ratio=1.0, cffn_ratio=0.25, init_values=0.0, drop_path_rate=0.2,
                  out_indices=(0, 1, 2, 3), with_cp=False,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[384, 384, 384, 384]),
    auxiliary_head=dict(in_channels=384))
