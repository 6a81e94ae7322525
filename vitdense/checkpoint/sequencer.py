"""Sequencer2D checkpoints: timm, timm features-only and okojoalg/sequencer (official) layouts -> vitdense.

vitdense's trunk keeps timm's names, so a timm state dict needs nothing but the classifier (``head.``) and
the final norm (``norm.``) dropped. The official release nests blocks as ``blocks.<stage>.<block>`` with
each stage's downsampling conv appended as its last entry; timm's own ``checkpoint_filter_fn`` moves those
to ``stages.<stage>.blocks.<block>`` / ``stages.<stage + 1>.downsample``. A timm ``features_only`` model
names its stages ``stages_<i>``.
"""
import re

from timm.models.sequencer import checkpoint_filter_fn

from .convert import register_converter


@register_converter('Sequencer2D')
def convert_sequencer(sd, model, notes):
    if any(k.startswith('blocks.') for k in sd) and not any(k.startswith('stages.') for k in sd):
        sd = checkpoint_filter_fn(sd, model)
        notes.append('official okojoalg/sequencer layout remapped (blocks.i.j -> stages.i.blocks.j)')
    elif any(k.startswith('stages_') for k in sd):
        sd = {re.sub(r'^stages_(\d+)\.', r'stages.\1.', k): v for k, v in sd.items()}
        notes.append('timm features_only layout remapped (stages_i -> stages.i)')
    return {k: v for k, v in sd.items() if not k.startswith(('head.', 'norm.'))}
