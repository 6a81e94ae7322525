"""BOAT checkpoints: mahaoyuHKU/pytorch-boat (BOAT-Swin, BOAT-CSWin), official Swin / CSWin, mmdet -> vitdense.

pytorch-boat BOAT-Swin is microsoft/Swin-Transformer's layout (patch merging at the end of a stage) plus
``layers.i.blocks.j.attnC.{qkv,proj,get_v}`` and ``norm4`` in the shifted blocks of stages 0-2. BOAT-CSWin is
microsoft/CSWin-Transformer's layout (``stage1_conv_embed.{0,2}``, ``stage{s}.{j}.{qkv,proj,attns.b.get_v}``,
``merge{s}``) plus ``content_attn`` / ``norm3`` in the even blocks. vitdense names FSLA ``fsla`` (its
positional conv ``lepe``) with norm ``norm_fsla``, and CSWin's attention ``attn.{qkv,proj,lepe.b}``.
Plain Swin / CSWin ImageNet checkpoints load too (every FSLA then stays at its init, listed as missing).
"""
import re

from .convert import register_converter
from .interpolate import resize_rel_pos_tables
from .io import CheckpointError, extract_state_dict, load_checkpoint_file
from .swin import mmdet_to_timm, official_to_timm

_SWIN_RENAMES = (
    (r'\.attnC\.get_v\.', '.fsla.lepe.'),
    (r'\.attnC\.', '.fsla.'),
    (r'\.norm4\.', '.norm_fsla.'),
)
_CSWIN_RENAMES = (
    (r'^stage1_conv_embed\.0\.', 'stem.conv.'),
    (r'^stage1_conv_embed\.2\.', 'stem.norm.'),
    (r'^merge(\d+)\.', lambda m: f'stages.{m.group(1)}.downsample.'),
    (r'^stage(\d+)\.(\d+)\.', lambda m: f'stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.'),
    (r'^(stages\.\d+\.blocks\.\d+\.)(qkv|proj)\.', r'\1attn.\2.'),
    (r'^(stages\.\d+\.blocks\.\d+\.)attns\.(\d+)\.get_v\.', r'\1attn.lepe.\2.'),
    (r'^(stages\.\d+\.blocks\.\d+\.)content_attn\.get_v\.', r'\1fsla.lepe.'),
    (r'^(stages\.\d+\.blocks\.\d+\.)content_attn\.', r'\1fsla.'),
    (r'^(stages\.\d+\.blocks\.\d+\.)norm3\.', r'\1norm_fsla.'),
)
# the final classification norm / head are not backbone weights (BOATClassifier maps them itself)
_CLASSIFIER_KEYS = ('head.', 'norm.')


def _rename(sd, rules):
    out = {}
    for k, v in sd.items():
        for pattern, repl in rules:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return out


def pytorch_boat_swin_to_vitdense(sd):
    if 'layers.0.downsample.reduction.weight' in sd:
        sd = official_to_timm(sd)
    return _rename(sd, _SWIN_RENAMES)


def pytorch_boat_cswin_to_vitdense(sd):
    return _rename(sd, _CSWIN_RENAMES)


def _layout_note(sd, model, notes, fsla_key):
    """Say when a checkpoint's FSLA placement is not the model's: the loads are then partial."""
    blocks_with_fsla = {k.split(f'.{fsla_key}.')[0] for k in sd if f'.{fsla_key}.' in k}
    model_blocks = {k.split('.fsla.')[0] for k in model.state_dict() if '.fsla.' in k}
    if not blocks_with_fsla:
        notes.append('no feature-space attention weights in this checkpoint (plain Swin / CSWin?): every FSLA '
                     'keeps its initialisation')
    elif blocks_with_fsla != model_blocks:
        notes.append(f"the checkpoint has FSLA in {len(blocks_with_fsla)} blocks, this {type(model).__name__} "
                     f"(layout='{getattr(model, 'layout', '?')}') in {len(model_blocks)}; build it with "
                     "layout='pytorch-boat' to use pytorch-boat weights as they were trained")


@register_converter('BOATSwin')
def convert_boat_swin(sd, model, notes):
    if any(k.startswith('stages.') and '.w_msa.' in k for k in sd):
        sd = mmdet_to_timm(sd)
        notes.append('mmdet/mmseg Swin layout remapped')
    elif any('.attnC.' in k for k in sd):
        _layout_note(sd, model, notes, 'attnC')
        sd = pytorch_boat_swin_to_vitdense(sd)
        notes.append('pytorch-boat BOAT-Swin layout remapped (attnC -> fsla, norm4 -> norm_fsla, get_v -> lepe)')
    elif 'layers.0.downsample.reduction.weight' in sd:
        sd = official_to_timm(sd)
        _layout_note(sd, model, notes, 'fsla')
        notes.append('official microsoft/Swin-Transformer layout remapped (patch merging moved to the next stage)')
    sd = {k: v for k, v in sd.items()
          if not k.endswith(('relative_position_index', 'attn_mask')) and not k.startswith(_CLASSIFIER_KEYS)}
    resize_rel_pos_tables(sd, model, notes)
    return sd


@register_converter('BOATCSWin')
def convert_boat_cswin(sd, model, notes):
    if 'stage1_conv_embed.0.weight' in sd:
        _layout_note(sd, model, notes, 'content_attn')
        sd = pytorch_boat_cswin_to_vitdense(sd)
        notes.append('pytorch-boat BOAT-CSWin / official CSWin layout remapped')
    return {k: v for k, v in sd.items() if not k.startswith(_CLASSIFIER_KEYS)}


def load_classifier(classifier, path: str):
    """Load a classification checkpoint (pytorch-boat or vitdense) into a BOATClassifier, head and final
    norm included; raises CheckpointError when the head or the backbone does not fit."""
    from .convert import convert_state_dict
    sd = extract_state_dict(load_checkpoint_file(path), str(path), None)
    if any(k.startswith('backbone.') for k in sd):  # a vitdense BOATClassifier state dict
        return classifier.load_state_dict(sd, strict=True)
    notes = []
    head = {k[len('head.'):]: v for k, v in sd.items() if k.startswith('head.')}
    final_norm = {k[len('norm.'):]: v for k, v in sd.items() if k.startswith('norm.')}
    backbone_sd = convert_state_dict(sd, classifier.backbone, notes)
    backbone_sd.update({f'out_norms.3.{k}': v for k, v in final_norm.items()})
    result = classifier.backbone.load_state_dict(backbone_sd, strict=False)
    if result.missing_keys:
        raise CheckpointError(f'{path} does not fill {len(result.missing_keys)} backbone tensors of the classifier '
                              f'(first: {result.missing_keys[0]}); check the arch and layout')
    weight = head.get('weight')
    if weight is None or tuple(weight.shape) != tuple(classifier.head.weight.shape):
        raise CheckpointError(f'{path}: classifier head {None if weight is None else tuple(weight.shape)} does not '
                              f'fit {tuple(classifier.head.weight.shape)}; set num_classes to match')
    classifier.head.load_state_dict(head)
    return result
