"""Checks a tool runs before training or testing, so that bad data fails early in one line.

* folders and annotation files exist;
* COCO json: parses, has ``images`` / ``annotations`` / ``categories``, lists at least one image, every image
  and annotation has the keys mmdet reads, boxes are 4 finite numbers, some categories match the dataset's
  classes. Boxes mmdet's ``CocoDataset`` drops anyway (width or height < 1, or entirely outside their image)
  and boxes that stick out of their image (clipped to it by the pipeline's ``Resize``, mmdet's
  ``clip_object_border=True``) are reported in one warning line each, naming the annotation ids. This parses
  the json once more before mmdet does (about 10 s for COCO train2017) and runs on rank 0 only.
* ADE20K-style folders: at least one image, and a label map for every image;
* the work dir is writable.

Label values outside the head's classes are checked on every batch by :class:`vitdense.engine.SegLabelCheckHook`.
"""
import glob
import json
import math
import os
import os.path as osp
import sys
from typing import Iterable, List, Optional, Tuple

from mmengine.config import Config

from vitdense.errors import UserError


def leaf_datasets(cfg: Config) -> Iterable[Tuple[str, dict]]:
    """(loader name, dataset cfg) of every dataset the train / val / test loaders read, through dataset
    wrappers (``dataset=``) and concatenations (``datasets=``)."""
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
    for loader, ds in leaf_datasets(cfg):
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
        for key, sub in _prefixes(ds).items():
            folder = osp.join(root, sub) if sub else root
            if sub and not osp.isdir(folder):
                raise UserError(f'{loader}: {key} folder not found: {folder}')
    if os.environ.get('RANK', '0') != '0':
        return  # content checks once per job, on rank 0; torchrun stops the other ranks when it fails
    checked = set()
    for loader, ds in leaf_datasets(cfg):
        if loader not in loaders:
            continue
        root = ds.get('data_root', '') or ''
        ann = ds.get('ann_file')
        prefix = _prefixes(ds)
        if ann and str(ann).endswith('.json') and cfg.get('default_scope') == 'mmdet':
            path = ann if osp.isabs(ann) else osp.join(root, ann)
            key = (osp.abspath(path), str((ds.get('metainfo') or {}).get('classes')))
            if key not in checked:
                checked.add(key)
                for line in check_coco_annotations(path, _dataset_classes(ds)):
                    print(f'warning: {loader}: {line}', file=sys.stderr)
        elif not ann and 'img_path' in prefix and 'seg_map_path' in prefix:
            key = (osp.join(root, prefix['img_path']), osp.join(root, prefix['seg_map_path']))
            if key not in checked:
                checked.add(key)
                check_seg_folders(*key, img_suffix=ds.get('img_suffix', '.jpg'),
                                  seg_map_suffix=ds.get('seg_map_suffix', '.png'))


def _prefixes(ds: dict) -> dict:
    prefix = ds.get('data_prefix') or {}
    return {'img_path': prefix} if isinstance(prefix, str) else prefix  # mmpretrain allows a plain folder


def _dataset_classes(ds: dict) -> Optional[tuple]:
    classes = (ds.get('metainfo') or {}).get('classes')
    if classes:
        return tuple(classes)
    try:
        import mmdet.datasets  # noqa: F401  (registers the dataset classes)
        from mmdet.registry import DATASETS
        cls = DATASETS.get(ds.get('type', 'CocoDataset'))
        return tuple(cls.METAINFO['classes']) if cls is not None and 'classes' in getattr(cls, 'METAINFO', {}) \
            else None
    except (ImportError, KeyError):
        return None


def _ids(items: List, limit: int = 8) -> str:
    shown = ', '.join(str(i) for i in items[:limit])
    return f'{shown}, ... ({len(items)} in all)' if len(items) > limit else shown


def check_coco_annotations(path: str, classes: Optional[tuple] = None) -> List[str]:
    """Validate a COCO instances json; raise :class:`UserError` (one line) or return one-line warnings."""
    try:
        with open(path, 'rb') as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise UserError(f'{path} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})') from None
    except UnicodeDecodeError:
        raise UserError(f'{path} is not a text (JSON) file') from None
    if not isinstance(data, dict):
        raise UserError(f'{path} holds a JSON {type(data).__name__}, expected a COCO object with images, '
                        'annotations and categories')
    missing = [k for k in ('images', 'annotations', 'categories') if not isinstance(data.get(k), list)]
    if missing:
        raise UserError(f"{path} is not a COCO instances file: no {' / '.join(missing)} list "
                        f'(keys found: {", ".join(sorted(data)) or "none"})')
    images, anns, cats = data['images'], data['annotations'], data['categories']
    if not images:
        raise UserError(f'{path} lists no images; the dataset would be empty')
    sizes = {}
    for n, img in enumerate(images):
        lacking = [k for k in ('id', 'file_name', 'width', 'height') if not isinstance(img, dict) or k not in img]
        if lacking:
            name = img.get('id', f'#{n}') if isinstance(img, dict) else f'#{n}'
            raise UserError(f"{path}: image {name} has no {' / '.join(lacking)}")
        sizes[img['id']] = (img['width'], img['height'])
    for n, cat in enumerate(cats):
        if not isinstance(cat, dict) or 'id' not in cat or 'name' not in cat:
            raise UserError(f'{path}: category #{n} needs an id and a name')
    degenerate, outside, clipped, orphans = [], [], [], []
    for n, ann in enumerate(anns):
        ann_id = ann.get('id', f'#{n}') if isinstance(ann, dict) else f'#{n}'
        lacking = [k for k in ('id', 'image_id', 'category_id', 'bbox') if not isinstance(ann, dict) or k not in ann]
        if lacking:
            raise UserError(f"{path}: annotation {ann_id} has no {' / '.join(lacking)}")
        box = ann['bbox']
        if not (isinstance(box, (list, tuple)) and len(box) == 4 and
                all(isinstance(v, (int, float)) and math.isfinite(v) for v in box)):
            raise UserError(f'{path}: annotation {ann_id} has bbox {box!r}; expected [x, y, width, height] numbers')
        if ann['image_id'] not in sizes:
            orphans.append(ann_id)
            continue
        x, y, w, h = box
        width, height = sizes[ann['image_id']]
        if w < 1 or h < 1 or ann.get('area', 1) <= 0:
            degenerate.append(ann_id)
        elif min(x + w, width) <= max(x, 0) or min(y + h, height) <= max(y, 0):
            outside.append(ann_id)
        elif x < 0 or y < 0 or x + w > width or y + h > height:
            clipped.append(ann_id)
    warnings = []
    if degenerate:
        warnings.append(f'{path}: {len(degenerate)} boxes with zero area or a side < 1 px are ignored '
                        f'(annotation ids {_ids(degenerate)})')
    if outside:
        warnings.append(f'{path}: {len(outside)} boxes lie entirely outside their image and are ignored '
                        f'(annotation ids {_ids(outside)})')
    if clipped:
        warnings.append(f'{path}: {len(clipped)} boxes extend beyond their image and are clipped to it '
                        f'(annotation ids {_ids(clipped)})')
    if orphans:
        warnings.append(f'{path}: {len(orphans)} annotations name an image id that is not in images and are '
                        f'ignored (annotation ids {_ids(orphans)})')
    if classes is not None and cats:
        names = [c['name'] for c in cats]
        unknown = [n for n in names if n not in classes]
        if len(unknown) == len(names):
            raise UserError(f"{path}: none of its {len(names)} categories (e.g. '{names[0]}') is among the "
                            f"dataset's {len(classes)} classes (e.g. '{classes[0]}'); set "
                            'metainfo=dict(classes=(...)) in the dataset config to its category names')
        if unknown:
            warnings.append(f"{path}: categories not among the dataset's classes are ignored: {_ids(unknown)}")
    return warnings


def check_seg_folders(img_dir: str, seg_dir: str, img_suffix: str = '.jpg', seg_map_suffix: str = '.png') -> None:
    """An image-folder / label-folder segmentation dataset: at least one image, a label map for each."""
    def stems(folder, suffix):
        found = glob.glob(osp.join(folder, '**', f'*{suffix}'), recursive=True)
        return {osp.relpath(f, folder)[:-len(suffix)] for f in found}
    images = stems(img_dir, img_suffix)
    if not images:
        raise UserError(f'no *{img_suffix} images in {img_dir}; the dataset would be empty')
    unlabelled = sorted(images - stems(seg_dir, seg_map_suffix))
    if unlabelled:
        raise UserError(f'{len(unlabelled)} images in {img_dir} have no label map {seg_dir}/<name>{seg_map_suffix}'
                        f' (e.g. {unlabelled[0]}{img_suffix})')


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
