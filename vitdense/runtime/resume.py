"""Which checkpoint ``tools/train.py --resume`` (no path) continues from."""
import glob
import os.path as osp
import sys
from typing import Optional

from vitdense.errors import UserError


def find_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` (no path) continues from, or None to start fresh.

    The file ``last_checkpoint`` names, when it is there and complete; otherwise (a crash from before checkpoints
    were written atomically, a deleted file) the newest complete ``*.pth`` in the work dir, with a warning.
    Completeness is the zip container's end record, which a truncated file lacks (a cheap check).
    """
    import zipfile
    named = None
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip() or None
    candidates = sorted(glob.glob(osp.join(work_dir, '*.pth')), key=osp.getmtime, reverse=True)
    for path in ([named] if named else []) + candidates:
        if osp.isfile(path) and zipfile.is_zipfile(path):
            if path != named:
                why = f'{pointer} names {named}, which is missing or incomplete' if named else \
                    f'no {pointer} (a crash right after a checkpoint was written)'
                print(f'warning: {why}; resuming from {path}, the newest complete checkpoint', file=sys.stderr)
            return path
    if named:
        raise UserError(f'{pointer} names {named}, which is missing or incomplete, and {work_dir} has no other '
                        'complete checkpoint; pass --resume PATH or start without --resume')
    return None
