"""What a backbone did to a checkpoint to make it its own: :class:`CheckpointAdaptation`.

A backbone family adapts checkpoints in its ``adapt_checkpoint(state_dict)`` method (resolved through
inheritance: a subclass extends its parent's with ``super().adapt_checkpoint(...)``), the way timm models
filter checkpoints with their ``checkpoint_filter_fn``. The method returns this record; loading
(:func:`vitdense.checkpoint.load_pretrained`), its log report and ``tools/convert_checkpoint.py`` print it as it
is, so what a family renames, drops on purpose (and why), resizes and notes is said in one place, the family's.

Every key in :attr:`renamed` and :attr:`resized` is a key of :attr:`state_dict` (the model's name); every key in
:attr:`dropped` a key of the checkpoint as it was given.
"""
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Sequence, Tuple, Union

import torch

Rule = Tuple[str, Union[str, Callable]]  # (pattern, replacement) for re.sub


@dataclass
class CheckpointAdaptation:
    state_dict: Dict[str, torch.Tensor]
    renamed: Dict[str, str] = field(default_factory=dict)   # model key -> checkpoint key
    dropped: Dict[str, str] = field(default_factory=dict)   # checkpoint key -> why
    resized: Dict[str, Tuple[tuple, tuple]] = field(default_factory=dict)  # key -> (checkpoint, model shape)
    notes: List[str] = field(default_factory=list)

    @classmethod
    def of(cls, state_dict: Dict[str, torch.Tensor]) -> 'CheckpointAdaptation':
        """An adaptation that has done nothing yet to (a shallow copy of) ``state_dict``."""
        return cls(state_dict=dict(state_dict))

    def origin(self, key: str) -> str:
        """The checkpoint's name for ``key`` of :attr:`state_dict`."""
        return self.renamed.get(key, key)

    def note(self, text: str) -> None:
        self.notes.append(text)

    # ---- renaming ------------------------------------------------------------------------------------------
    def rename_keys(self, new_key: Callable[[str], str], note: str = None) -> int:
        """Rename every key ``k`` to ``new_key(k)`` (order kept); ``note`` is recorded when anything moved.
        Returns how many keys moved."""
        out, moved = {}, 0
        for key, value in self.state_dict.items():
            target = new_key(key)
            if target != key:
                moved += 1
                origin = self.renamed.pop(key, key)
                if target != origin:
                    self.renamed[target] = origin
            out[target] = value
        self.state_dict = out
        if moved and note:
            self.note(note)
        return moved

    def rename(self, rules: Sequence[Rule], note: str = None) -> int:
        """Apply each ``(pattern, replacement)`` of ``rules`` in turn (``re.sub``) to every key."""
        def new_key(key):
            for pattern, replacement in rules:
                key = re.sub(pattern, replacement, key)
            return key
        return self.rename_keys(new_key, note)

    def apply(self, filter_fn: Callable[[Dict[str, torch.Tensor]], Dict[str, torch.Tensor]], note: str,
              dropped_why: str = 'not part of the layout it maps from') -> None:
        """Run a whole-dict remap someone else wrote (e.g. timm's ``checkpoint_filter_fn``). Which checkpoint
        tensor each new key holds is read from the tensors themselves (same storage, offset and size: renamed,
        maybe reshaped); checkpoint keys that left no tensor behind are recorded as dropped with
        ``dropped_why``."""
        def where(t):
            return t.untyped_storage().data_ptr(), t.storage_offset(), t.numel()
        source = {}
        for key, value in self.state_dict.items():
            source.setdefault(where(value), key)
        new = filter_fn(dict(self.state_dict))
        used, renamed = set(), {}
        for key, value in new.items():
            old = source.get(where(value))
            if old is not None:
                used.add(old)
                if old != key:
                    renamed[key] = self.origin(old)
                elif old in self.renamed:
                    renamed[key] = self.renamed[old]
        for key in self.state_dict:
            if key not in used:
                self.dropped[self.origin(key)] = dropped_why
        self.renamed = renamed
        self.state_dict = dict(new)
        self.note(note)

    # ---- dropping ------------------------------------------------------------------------------------------
    def drop(self, keys: Iterable[str], why: str) -> List[str]:
        """Remove ``keys`` (names in :attr:`state_dict`) on purpose, saying why. Returns the keys removed."""
        gone = [k for k in keys if k in self.state_dict]
        for key in gone:
            del self.state_dict[key]
            self.dropped[self.renamed.pop(key, key)] = why
            self.resized.pop(key, None)
        return gone

    def drop_prefix(self, prefixes: Union[str, Tuple[str, ...]], why: str) -> List[str]:
        return self.drop([k for k in self.state_dict if k.startswith(prefixes)], why)

    def drop_suffix(self, suffixes: Union[str, Tuple[str, ...]], why: str) -> List[str]:
        return self.drop([k for k in self.state_dict if k.endswith(suffixes)], why)

    # ---- resizing ------------------------------------------------------------------------------------------
    def resize(self, key: str, value: torch.Tensor) -> None:
        """Replace ``key``'s tensor by ``value``, its resampling to the model's shape."""
        before = self.resized[key][0] if key in self.resized else tuple(self.state_dict[key].shape)
        self.state_dict[key] = value
        self.resized[key] = (before, tuple(value.shape))

    # ---- reading it ----------------------------------------------------------------------------------------
    def dropped_by_reason(self) -> Dict[str, List[str]]:
        """{why: [checkpoint keys]} in the order the reasons first came up."""
        out: Dict[str, List[str]] = {}
        for key, why in self.dropped.items():
            out.setdefault(why, []).append(key)
        return out

    @property
    def changed_nothing(self) -> bool:
        return not (self.renamed or self.dropped or self.resized or self.notes)
