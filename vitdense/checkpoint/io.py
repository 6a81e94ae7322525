"""Reading checkpoint files safely.

Every checkpoint is read with ``torch.load(weights_only=True)``: tensors and plain containers only. The
framework's own checkpoints fit that because :class:`vitdense.engine.SafeCheckpointHook` stores mmengine's
message-hub state (``HistoryBuffer`` objects holding numpy arrays) as tensors and plain values. A file that
carries any other pickled object is refused with one line naming it; nothing is allow-listed wholesale.

mmengine's own loader for local files (used by ``Runner`` for ``load_from`` / ``resume``, by mmdet's and mmseg's
inferencers and by ``init_cfg=dict(type='Pretrained')``) calls ``torch.load`` without ``weights_only``, which is safe
only while torch's default is True (torch >= 2.6, and ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` unset).
:func:`install_safe_loading` routes that loader through :func:`load_checkpoint_file`, so every local checkpoint
the runner reads takes the same strict, one-line-error path whatever the environment says. Importing this module
changes nothing; :mod:`vitdense.engine`, which every vitdense config lists in ``custom_imports``, calls it.
"""
import os
import pickle
import re
import zipfile
from typing import Any, Dict

import torch

from vitdense.errors import CheckpointError

_UNSUPPORTED_GLOBAL = re.compile(r'Unsupported global: GLOBAL ([\w.]+)')


def load_checkpoint_file(path: str, map_location='cpu') -> Any:
    """``torch.load`` with ``weights_only=True`` and one-line errors for the usual failures."""
    path = os.fspath(path)
    if path.startswith(('http://', 'https://')):
        raise CheckpointError(f'{path} is a URL; download it first (this machine may have no internet) '
                              'and pass the local file path')
    if not os.path.exists(path):
        raise CheckpointError(f'checkpoint not found: {path} (check init_cfg.checkpoint / the CKPT argument)')
    if os.path.isdir(path):
        raise CheckpointError(f'checkpoint path {path} is a directory; pass the .pth file inside it')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = _UNSUPPORTED_GLOBAL.search(str(err))
        if found:
            raise CheckpointError(
                f'refusing to load {path}: it pickles a {found.group(1)} object, and checkpoints are read with '
                'weights_only=True (tensors and plain containers); re-save its state_dict with torch.save '
                'if you trust the file') from None
        raise CheckpointError(f'{path} is not a readable PyTorch checkpoint ({_first_line(err)})') from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f'{path} is not a readable PyTorch checkpoint (truncated or another format: '
                              f'{_first_line(err)})') from None


def load_from_local_weights_only(filename, map_location=None):
    return load_checkpoint_file(os.path.expanduser(filename), map_location=map_location)


def install_safe_loading() -> None:
    """Route mmengine's local-file checkpoint loading (any path without a URL scheme) through the safe loader.

    Process-wide and idempotent: mmengine keeps one loader per path prefix. Called by :mod:`vitdense.engine`.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_weights_only, force=True)


def safe_loading_installed() -> bool:
    """Whether mmengine's local-file loader is :func:`install_safe_loading`'s."""
    from mmengine.runner.checkpoint import CheckpointLoader
    return CheckpointLoader._schemes.get('') is load_from_local_weights_only


def check_fits(model: torch.nn.Module, checkpoint: Any, path: str) -> None:
    """Fail in one line unless ``checkpoint`` holds exactly ``model``'s tensors (names and shapes).

    For evaluating or resuming, where mmengine would otherwise only log missing / unexpected keys and carry on
    with randomly initialised layers.
    """
    sd = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(sd, dict) or not any(torch.is_tensor(v) for v in sd.values()):
        raise CheckpointError(f'{path} holds no state dict (expected the .pth that tools/train.py writes)')
    sd = {k[7:] if k.startswith('module.') else k: v for k, v in sd.items() if torch.is_tensor(v)}
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        hint = ' (it looks like a backbone-only checkpoint: use it as model.backbone.init_cfg.checkpoint)' \
            if sd and not is_full_model(sd) and is_full_model(own) else ''
        example = f"e.g. missing '{missing[0]}'" if missing else f"e.g. unexpected '{unexpected[0]}'"
        raise CheckpointError(f'{path} does not match the model of this config: {len(missing)} of {len(own)} '
                              f'model tensors missing, {len(unexpected)} unexpected ({example}){hint}; '
                              'pass the checkpoint trained with this config')
    wrong = [(k, tuple(sd[k].shape), tuple(v.shape)) for k, v in own.items() if sd[k].shape != v.shape]
    if wrong:
        k, got, want = wrong[0]
        raise CheckpointError(f'{path} does not match the model of this config: {len(wrong)} tensors have other '
                              f"shapes, e.g. '{k}' {got} vs {want} in the model (another size or number of "
                              'classes?); pass the checkpoint trained with this config')


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


HEAD_PREFIXES = ('neck.', 'rpn_head.', 'roi_head.', 'bbox_head.', 'mask_head.', 'decode_head.',
                 'auxiliary_head.', 'head.', 'data_preprocessor.')


def extract_state_dict(checkpoint: Any, path: str = '<checkpoint>', prefix: str = None) -> Dict[str, torch.Tensor]:
    """The backbone tensors of a checkpoint, whatever wraps them.

    Accepts raw state dicts, ``{'state_dict': ...}`` (mmengine), ``{'model': ...}`` (official Swin / ConvNeXt /
    DeiT releases) and ``{'module': ...}``; strips DDP's ``module.``. With ``prefix`` (e.g. 'backbone.') only
    keys under it are kept. Without one, a whole detector / segmentor / classifier checkpoint is recognised by
    its ``backbone.`` keys and its backbone part is taken (the caller logs that).
    """
    sd = checkpoint
    if isinstance(sd, dict):
        for key in ('state_dict', 'model', 'module', 'model_ema'):
            if key in sd and isinstance(sd[key], dict):
                sd = sd[key]
                break
    if not isinstance(sd, dict) or not sd or not all(isinstance(k, str) for k in sd):
        raise CheckpointError(f'{path} holds no state dict (expected a dict of tensors, or one under '
                              "'state_dict' / 'model')")
    sd = {k[7:] if k.startswith('module.') else k: v for k, v in sd.items() if torch.is_tensor(v)}
    if not sd:
        raise CheckpointError(f'{path} holds no tensors')
    if prefix:
        picked = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if not picked:
            raise CheckpointError(f"{path} has no keys under prefix '{prefix}' (first key: '{next(iter(sd))}')")
        return picked
    return sd


def is_full_model(sd: Dict[str, torch.Tensor]) -> bool:
    """A detector / segmentor / classifier state dict rather than a bare backbone one."""
    return any(k.startswith('backbone.') for k in sd)
