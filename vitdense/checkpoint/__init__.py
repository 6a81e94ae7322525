"""Checkpoint reading and conversion for every backbone family, in one place."""
from .adaptation import CheckpointAdaptation
from .convert import CONVERTERS, LoadReport, adapt_checkpoint, convert_state_dict, load_pretrained, register_converter
from .io import CheckpointError, extract_state_dict, is_full_model, load_checkpoint_file
from . import boat, convnext, sequencer, swin, timm_backbone, vit, vit_hybrid  # noqa: F401  (register converters)

__all__ = ['CONVERTERS', 'CheckpointAdaptation', 'CheckpointError', 'adapt_checkpoint', 'LoadReport', 'convert_state_dict', 'extract_state_dict',
           'is_full_model', 'load_checkpoint_file', 'load_pretrained', 'register_converter']
