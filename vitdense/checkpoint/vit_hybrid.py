"""Hybrid ViT (ResNet + ViT) checkpoints -> :class:`~vitdense.models.backbones.HybridVisionTransformer`.

timm's ``vit_*_r*`` state dicts (``vit_base_r50_s16_384.orig_in21k_ft_in1k``, the AugReg R26+ViT-S, ...) already
use the backbone's names (``patch_embed.backbone.*`` for the ResNet, ``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.*``), so the converter only drops the classifier (``head``, the final ``norm`` /
``fc_norm``, ``pre_logits``) and fits ``pos_embed`` to the backbone: bicubic resampling (timm's
``resample_abs_pos_embed``, as timm's own loader does) from the checkpoint's grid (24 x 24 for the 384 model)
to the ``img_size`` grid, keeping the class-token position, or dropping it with the token for windowed
backbones. Google's ``.npz`` releases are not PyTorch files: let timm read them
(``timm.create_model(name, pretrained=True)``) and ``torch.save`` its ``state_dict()``.
"""
from .convert import register_converter
from .io import CheckpointError
from .vit import CLASSIFIER_ONLY, adapt_pos_embed, drop_classifier


@register_converter('HybridVisionTransformer')
def convert_vit_hybrid(sd, model, notes):
    if not any(k.startswith('patch_embed.backbone.') for k in sd):
        if 'patch_embed.proj.weight' in sd:
            raise CheckpointError('this is a plain ViT checkpoint (patch_embed.proj on pixels, no '
                                  'patch_embed.backbone.* ResNet); load it into vitdense.VisionTransformer')
        raise CheckpointError('no patch_embed.backbone.* (ResNet) weights: not a hybrid ViT checkpoint '
                              '(timm vit_*_r* / vitdense HybridVisionTransformer)')
    sd = drop_classifier(sd, CLASSIFIER_ONLY, notes)
    adapt_pos_embed(sd, model, notes)
    return sd
