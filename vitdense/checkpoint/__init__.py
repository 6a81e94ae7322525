"""Reading checkpoints and loading them into backbones, for every family the same way.

The layers: :mod:`.io` reads files safely and finds the backbone tensors in them; :mod:`.adaptation` is the record
of what a backbone did to a checkpoint (:class:`CheckpointAdaptation`); :mod:`.interpolate` resizes position tables
for the families that share them; :mod:`.pretrained` loads a checkpoint into a backbone through the backbone's own
``adapt_checkpoint`` and reports it. What a family's checkpoints look like is the family's business: it lives in its
backbone class (``vitdense/models/backbones/<family>.py``), never here; nothing here imports ``vitdense.models``.
"""
from .adaptation import CheckpointAdaptation
from .io import CheckpointError, extract_state_dict, is_full_model, load_checkpoint_file
from .pretrained import LoadReport, load_pretrained

__all__ = ['CheckpointAdaptation', 'CheckpointError', 'LoadReport', 'extract_state_dict', 'is_full_model',
           'load_checkpoint_file', 'load_pretrained']
