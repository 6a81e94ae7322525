"""Loading a pretrained checkpoint into a backbone: find the tensors, remap, resize, report.

Each family registers a converter ``fn(state_dict, model, notes) -> state_dict`` that maps the layouts it
knows (timm, the official release, mmdet, vitdense) onto the backbone's own names and resizes position
tables; :func:`load_pretrained` does the rest for every family the same way.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List

import torch
from mmengine.logging import print_log

from .io import CheckpointError, extract_state_dict, is_full_model, load_checkpoint_file

CONVERTERS: Dict[str, Callable] = {}


def register_converter(*class_names: str):
    def wrap(fn):
        for name in class_names:
            CONVERTERS[name] = fn
        return fn
    return wrap


@dataclass
class LoadReport:
    path: str
    loaded: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)   # in the checkpoint, not in the model
    missing: List[str] = field(default_factory=list)   # in the model, not in the checkpoint
    notes: List[str] = field(default_factory=list)     # remaps, interpolations, extractions

    def summary(self) -> str:
        def short(keys):
            return ', '.join(keys[:6]) + (f' (+{len(keys) - 6} more)' if len(keys) > 6 else '')
        lines = [f'loaded {len(self.loaded)} tensors from {self.path}']
        lines += [f'  note: {n}' for n in self.notes]
        if self.dropped:
            lines.append(f'  dropped {len(self.dropped)} checkpoint tensors the backbone has no place for: '
                         f'{short(self.dropped)}')
        if self.missing:
            lines.append(f'  missing {len(self.missing)} backbone tensors (left at their init): '
                         f'{short(self.missing)}')
        return '\n'.join(lines)


def convert_state_dict(sd: Dict[str, torch.Tensor], model: torch.nn.Module, notes: list = None):
    """Map a (backbone-level) state dict onto ``model``'s names with the family's converter."""
    notes = [] if notes is None else notes
    converter = CONVERTERS.get(type(model).__name__)
    return converter(dict(sd), model, notes) if converter else dict(sd)


def load_pretrained(model: torch.nn.Module, path: str, prefix: str = None, logger='current') -> LoadReport:
    """Load ``path`` into ``model`` (a vitdense backbone) and log what was mapped, dropped and missing.

    Raises :class:`CheckpointError` (one line) when the file is not a checkpoint, when no tensor matches the
    model, or when tensors match by name but not by shape after conversion.
    """
    report = LoadReport(path=str(path))
    sd = extract_state_dict(load_checkpoint_file(path), str(path), prefix)
    if prefix is None and is_full_model(sd):
        others = sorted({k.split('.')[0] for k in sd if not k.startswith('backbone.')})
        report.notes.append(f"this is a full model checkpoint ({', '.join(others) or 'backbone only'}); "
                            "using its 'backbone.' weights")
        sd = {k[9:]: v for k, v in sd.items() if k.startswith('backbone.')}
    sd = convert_state_dict(sd, model, report.notes)

    own = model.state_dict()
    shape_mismatch = [k for k, v in sd.items() if k in own and own[k].shape != v.shape]
    if shape_mismatch:
        k = shape_mismatch[0]
        raise CheckpointError(
            f'{path} does not fit {type(model).__name__}: {len(shape_mismatch)} tensors have other shapes, '
            f'e.g. {k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}; check the arch '
            '(tiny/small/base/...) the checkpoint was made for')
    report.loaded = [k for k in sd if k in own]
    report.dropped = [k for k in sd if k not in own]
    report.missing = [k for k in own if k not in sd]
    # a checkpoint of another family may share a few generic names (output norms): ask for a real overlap
    if len(report.loaded) < 0.5 * len(sd) and len(report.loaded) < 0.5 * len(own):
        raise CheckpointError(
            f"only {len(report.loaded)} of the {len(sd)} tensors in {path} match {type(model).__name__}'s "
            f"parameter names (first unmatched key: '{report.dropped[0] if report.dropped else ''}'); "
            'it is not a checkpoint of this backbone family')
    model.load_state_dict({k: sd[k] for k in report.loaded}, strict=False)
    print_log(report.summary(), logger=logger)
    return report
