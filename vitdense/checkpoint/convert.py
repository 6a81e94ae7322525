"""Loading a pretrained checkpoint into a backbone: find the tensors, let the backbone adapt them, load, report.

The backbone adapts the checkpoint itself (``model.adapt_checkpoint(state_dict)`` -> :class:`CheckpointAdaptation`:
renames, drops with their reasons, resizes, notes); :func:`load_pretrained` does the rest for every family the same
way and its report prints the adaptation as it is.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List

import torch
from mmengine.logging import print_log

from .adaptation import CheckpointAdaptation
from .io import CheckpointError, extract_state_dict, is_full_model, load_checkpoint_file

# families whose adaptation has not moved into their backbone class yet (removed family by family)
CONVERTERS: Dict[str, Callable] = {}


def register_converter(*class_names: str):
    def wrap(fn):
        for name in class_names:
            CONVERTERS[name] = fn
        return fn
    return wrap


def _short(keys, limit=6):
    keys = list(keys)
    return ', '.join(keys[:limit]) + (f' (+{len(keys) - limit} more)' if len(keys) > limit else '')


@dataclass
class LoadReport:
    path: str
    adaptation: CheckpointAdaptation = None
    loaded: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)   # after adaptation, in the checkpoint, not in the model
    missing: List[str] = field(default_factory=list)   # in the model, not in the checkpoint
    notes: List[str] = field(default_factory=list)     # where the tensors came from, then the adaptation's notes

    def summary(self) -> str:
        a = self.adaptation or CheckpointAdaptation.of({})
        lines = [f'loaded {len(self.loaded)} tensors from {self.path}']
        lines += [f'  note: {n}' for n in self.notes]
        if a.renamed:
            lines.append(f'  renamed {len(a.renamed)} tensors (model <- checkpoint): '
                         f'{_short(f"{k} <- {v}" for k, v in a.renamed.items())}')
        if a.resized:
            lines.append(f'  resized {len(a.resized)} tensors: '
                         f'{_short(f"{k} {old} -> {new}" for k, (old, new) in a.resized.items())}')
        for why, keys in a.dropped_by_reason().items():
            lines.append(f'  dropped {len(keys)} checkpoint tensors on purpose ({why}): {_short(keys)}')
        if self.dropped:
            lines.append(f'  dropped {len(self.dropped)} checkpoint tensors the backbone has no place for: '
                         f'{_short(self.dropped)}')
        if self.missing:
            lines.append(f'  missing {len(self.missing)} backbone tensors (left at their init): '
                         f'{_short(self.missing)}')
        return '\n'.join(lines)


def adapt_checkpoint(model: torch.nn.Module, sd: Dict[str, torch.Tensor]) -> CheckpointAdaptation:
    """``model.adapt_checkpoint(sd)``; names kept as they are for a module without one."""
    legacy = CONVERTERS.get(type(model).__name__)
    if legacy is not None:
        notes = []
        converted = legacy(dict(sd), model, notes)
        adaptation = CheckpointAdaptation(state_dict=converted, notes=notes)
        adaptation.dropped = {k: 'removed by the family converter' for k in sd if k not in converted}
        return adaptation
    method = getattr(model, 'adapt_checkpoint', None)
    if method is None:
        return CheckpointAdaptation.of(sd)
    return method(dict(sd))


def convert_state_dict(sd: Dict[str, torch.Tensor], model: torch.nn.Module, notes: list = None):
    """The adapted state dict alone (``model.adapt_checkpoint(sd).state_dict``), its notes added to ``notes``."""
    adaptation = adapt_checkpoint(model, sd)
    if notes is not None:
        notes.extend(adaptation.notes)
    return adaptation.state_dict


def load_pretrained(model: torch.nn.Module, path: str, prefix: str = None, logger='current') -> LoadReport:
    """Load ``path`` into ``model`` (a vitdense backbone) and log what was adapted, dropped and missing.

    Raises :class:`CheckpointError` (one line) when the file is not a checkpoint, when no tensor matches the
    model, or when tensors match by name but not by shape after adaptation.
    """
    report = LoadReport(path=str(path))
    sd = extract_state_dict(load_checkpoint_file(path), str(path), prefix)
    if prefix is None and is_full_model(sd):
        others = sorted({k.split('.')[0] for k in sd if not k.startswith('backbone.')})
        report.notes.append(f"this is a full model checkpoint ({', '.join(others) or 'backbone only'}); "
                            "using its 'backbone.' weights")
        sd = {k[9:]: v for k, v in sd.items() if k.startswith('backbone.')}
    report.adaptation = adapt_checkpoint(model, sd)
    report.notes += report.adaptation.notes
    sd = report.adaptation.state_dict

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
