"""What tools/train.py and tools/test.py share: config loading, task detection, up-front checks."""
import os
import os.path as osp
from typing import Iterable, Optional

from mmengine.config import Config, DictAction  # noqa: F401  (DictAction re-exported for the tools)

TASKS = {'mmdet': 'detection', 'mmseg': 'segmentation', 'mmpretrain': 'classification'}


class UserError(Exception):
    """A problem with the user's input; the tools print its message as one line and exit with status 2."""


def load_config(path: str, cfg_options: Optional[dict] = None, work_dir: Optional[str] = None) -> Config:
    if not osp.isfile(path):
        raise UserError(f'config not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('default_scope') not in TASKS:
        raise UserError(f"{path} sets default_scope={cfg.get('default_scope')!r}; vitdense configs inherit a "
                        "runtime from configs/_base_/default_runtime_{det,seg}.py")
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def _datasets(cfg: Config) -> Iterable[dict]:
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        stack = [dataset] if dataset else []
        while stack:
            ds = stack.pop()
            if 'datasets' in ds:
                stack.extend(ds['datasets'])
            elif 'dataset' in ds:
                stack.append(ds['dataset'])
            else:
                yield loader, ds


def check_data(cfg: Config, loaders=('train_dataloader', 'val_dataloader', 'test_dataloader')) -> None:
    """Fail early, in one line, when a dataset folder or annotation file the config names is missing."""
    for loader, ds in _datasets(cfg):
        if loader not in loaders:
            continue
        root = ds.get('data_root', '') or ''
        if root and not osp.isdir(root):
            raise UserError(f"{loader}: data folder not found: {root} (expected the standard layout there, "
                            "e.g. data/coco/{annotations,train2017,val2017} or data/ade/ADEChallengeData2016/"
                            "{images,annotations}; download it or point data_root elsewhere with --cfg-options)")
        ann = ds.get('ann_file')
        if ann:
            ann_path = ann if osp.isabs(ann) else osp.join(root, ann)
            if not osp.isfile(ann_path):
                raise UserError(f'{loader}: annotation file not found: {ann_path}')
        for key, sub in (ds.get('data_prefix') or {}).items():
            folder = osp.join(root, sub) if sub else root
            if sub and not osp.isdir(folder):
                raise UserError(f'{loader}: {key} folder not found: {folder}')


def check_work_dir(work_dir: str) -> None:
    try:
        os.makedirs(work_dir, exist_ok=True)
        probe = osp.join(work_dir, '.write_test')
        with open(probe, 'w'):
            pass
        os.remove(probe)
    except OSError as err:
        raise UserError(f'work_dir {work_dir} is not writable ({err.strerror}); pass --work-dir DIR with a '
                        'folder you can write') from None
