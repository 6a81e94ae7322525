"""What tools/train.py and tools/test.py share: config loading, up-front checks, one-line errors, resuming.

Errors a user can fix (a missing file, a typo in a type name, a bad annotation, a refused checkpoint, a loss that
diverged) reach the terminal as one line, ``error: ...``, and exit status 2 (:func:`run_tool`); anything else is
a bug and keeps its traceback. Data checks before training (:func:`check_data`):

* folders and annotation files exist;
* COCO json: parses, has ``images`` / ``annotations`` / ``categories``, lists at least one image, every image
  and annotation has the keys mmdet reads, boxes are 4 finite numbers, some categories match the dataset's
  classes. Boxes mmdet's ``CocoDataset`` drops anyway (width or height < 1, or entirely outside their image)
  and boxes that stick out of their image (clipped to it by the pipeline's ``Resize``, mmdet's
  ``clip_object_border=True``) are reported in one warning line each, naming the annotation ids. This parses
  the json once more before mmdet does (about 10 s for COCO train2017) and runs on rank 0 only.
* ADE20K-style folders: at least one image, and a label map for every image.

Label values outside the head's classes are checked on every batch by :class:`vitdense.engine.SegLabelCheckHook`.
"""
import argparse
import difflib
import glob
import json
import math
import os
import os.path as osp
import re
import sys
from typing import Callable, Iterable, List, Optional, Tuple

from mmengine.config import Config, DictAction  # noqa: F401  (DictAction re-exported for the tools)

from vitdense.errors import UserError

TASKS = {'mmdet': 'detection', 'mmseg': 'segmentation', 'mmpretrain': 'classification'}


def load_config(path: str, cfg_options: Optional[dict] = None, work_dir: Optional[str] = None) -> Config:
    """A config file or shipped config name (``swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco``), ``vitdense::``
    bases included (:func:`vitdense.zoo.read_config`), checked and given a ``work_dir``."""
    from vitdense.zoo import read_config, resolve_config
    path = resolve_config(path)
    cfg = read_config(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('default_scope') not in TASKS:
        raise UserError(f"{path} sets default_scope={cfg.get('default_scope')!r}; vitdense configs inherit a "
                        "runtime from configs/_base_/default_runtime_{det,seg}.py")
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


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


# ---- one-line errors -----------------------------------------------------------------------------------------

_REGISTRY_MISS = re.compile(r"^(\S+) is not in the (\S+?)::(.+?) registry")
_WORKER_WRAPPED = re.compile(r'^Caught \w+ in DataLoader worker process \d+\.')


def _registry_names(scope: str, name: str) -> List[str]:
    """Every type name reachable from the ``scope`` registry called ``name``, scoped names for the others."""
    import mmengine.registry as roots
    for obj in vars(roots).values():
        if isinstance(obj, roots.Registry) and obj.parent is None and obj.name == name:
            root = obj
            break
    else:
        return []
    found, stack = [], [root]
    while stack:
        reg = stack.pop()
        stack.extend(reg._children.values())
        local = reg.scope in (scope, 'mmengine')
        found.extend(k if local else f'{reg.scope}.{k}' for k in reg._module_dict)
    return sorted(set(found))


def _unknown_type_message(err: KeyError) -> Optional[str]:
    text = err.args[0] if err.args and isinstance(err.args[0], str) else ''
    if 'is not a registered vitdense' in text:
        return text
    found = _REGISTRY_MISS.match(text)
    if not found:
        return None
    name, scope, registry = found.groups()
    close = difflib.get_close_matches(name, _registry_names(scope, registry), n=5, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else '; check the spelling and custom_imports'
    return f"unknown type '{name}' in the config: no such {registry} in {scope}'s registry{hint}"


def _original_message(err: BaseException) -> str:
    """The message itself, also when a DataLoader worker wrapped it together with the worker's traceback."""
    text = str(err.args[0]) if err.args else str(err)
    if _WORKER_WRAPPED.match(text):
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        text = last.split(': ', 1)[1] if ': ' in last else last
    return text


def _raised_by_vitdense(err: BaseException) -> bool:
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return osp.abspath(tb.tb_frame.f_code.co_filename).startswith(osp.dirname(osp.abspath(__file__)) + os.sep)


def describe_error(err: BaseException) -> Optional[str]:
    """One line for the errors a user can fix; None for everything else (bugs keep their traceback)."""
    if isinstance(err, UserError):
        return _original_message(err)
    if isinstance(err, KeyError):
        return _unknown_type_message(err)
    text = _original_message(err)
    if isinstance(err, AssertionError) and text.startswith('failed to load image:'):
        path = text.split(':', 1)[1].strip()
        return f'cannot decode image {path}: the file is truncated, corrupt or not an image; replace or remove it'
    if isinstance(err, FileNotFoundError):
        return f'file not found: {err.filename}' if err.filename else text
    if isinstance(err, ValueError) and _raised_by_vitdense(err):
        return text  # vitdense raises ValueError only for bad input, with a one-line message
    return None


def run_tool(main: Callable[[], None]) -> None:
    """Run a tool's ``main``: user-fixable errors become ``error: <one line>`` on stderr and exit status 2."""
    try:
        main()
    except Exception as err:  # noqa: BLE001  (re-raised unless it is a known user error)
        line = describe_error(err)
        if line is None:
            raise
        print(f"error: {' '.join(line.split())}", file=sys.stderr)
        sys.exit(2)


# ---- launching ----------------------------------------------------------------------------------------------

def _sync_bn_to_bn(node) -> int:
    count = 0
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            count += 1
        for value in node.values():
            count += _sync_bn_to_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += _sync_bn_to_bn(value)
    return count


def add_launcher_args(parser) -> None:
    """``--launcher`` and the ``--local-rank`` that torch.distributed.launch passes (exported as LOCAL_RANK by
    :func:`parse_launcher_args`)."""
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher (dist_train.sh sets pytorch, slurm_train.sh slurm)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)


def parse_launcher_args(parser, argv=None):
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def setup_cpu_distributed(cfg: Config) -> None:
    """Multi-process training without CUDA (torchrun, ``--launcher pytorch``): gloo instead of nccl.

    mmengine's ``init_dist`` pins a CUDA device and its DDP wrappers pass CUDA device ids, so on a CPU-only
    machine the gloo process group is started here (mmengine then uses it as is), DDP gets no device ids (the
    Runner's ``model_wrapper_cfg``, or a FlexibleRunner's ``DDPStrategy.model_wrapper``), and SyncBN (which has no
    CPU kernel) becomes per-process BN. On GPU machines nothing changes.
    """
    import torch
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise UserError(f'--launcher {cfg.launcher} needs GPUs here; CPU multi-process training runs through '
                        'torchrun: bash tools/dist_train.sh CONFIG NUM_PROCS (--launcher pytorch)')
    flexible = cfg.get('runner_type') == 'FlexibleRunner'
    strategy = dict(cfg.get('strategy') or dict(type='DDPStrategy')) if flexible else {}
    if cfg.get('sync_bn') or strategy.get('sync_bn'):
        raise UserError('--sync-bn needs GPUs (SyncBatchNorm has no CPU kernel); drop it for CPU processes')
    if flexible and strategy.get('type') not in ('DDPStrategy', 'FSDPStrategy'):
        raise UserError(f"strategy type={strategy.get('type')!r} needs GPUs; CPU processes run DDPStrategy "
                        '(or FSDPStrategy, see the README)')
    import datetime
    import torch.distributed as dist
    env_cfg = cfg.get('env_cfg') or {}
    dist_cfg = dict(env_cfg.get('dist_cfg') or {}, backend='gloo')
    cfg.env_cfg = dict(env_cfg, dist_cfg=dist_cfg)
    if not dist.is_initialized():
        timeout = dist_cfg.get('timeout')
        dist.init_process_group(backend='gloo', **({'timeout': datetime.timedelta(seconds=timeout)}
                                                   if timeout else {}))
    if flexible and strategy['type'] == 'FSDPStrategy':
        # FSDP initialises on the device it is given (mmengine passes the CUDA index LOCAL_RANK)
        strategy['model_wrapper'] = dict(strategy.get('model_wrapper') or dict(type='MMFullyShardedDataParallel'),
                                         device_id='cpu')
    elif flexible:
        strategy['model_wrapper'] = dict(strategy.get('model_wrapper') or dict(
            type='MMDistributedDataParallel', broadcast_buffers=False), device_ids=None)
    else:
        wrapper = dict(cfg.get('model_wrapper_cfg') or dict(
            type='MMDistributedDataParallel', broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False)))
        wrapper['device_ids'] = None
        cfg.model_wrapper_cfg = wrapper
    if flexible:
        cfg.strategy = strategy
    if _sync_bn_to_bn(cfg.model):
        print('warning: SyncBN -> BN for CPU processes (batch statistics per process)', file=sys.stderr)


def build_runner(cfg: Config):
    """mmengine's ``Runner``, or the runner the config names in ``runner_type`` (``'FlexibleRunner'`` with a
    ``strategy``), as mmdet's and mmseg's tools/train.py and tools/test.py do."""
    if 'runner_type' not in cfg:
        from mmengine.runner import Runner
        return Runner.from_cfg(cfg)
    from mmengine.registry import RUNNERS
    return RUNNERS.build(cfg)


def unwrapped_model(runner):
    """The runner's model without its DDP / FSDP wrapper. A FlexibleRunner's strategy would build the model only
    when training starts; it is built here (by that strategy, which then takes it as it is) so that it can be
    checked against a checkpoint first."""
    if isinstance(runner.model, dict):
        runner.model = runner.strategy.build_model(runner.model)
    return runner.model.module if hasattr(runner.model, 'module') else runner.model


def check_sharding_strategy(cfg: Config) -> None:
    """A FlexibleRunner with ``FSDPStrategy`` runs (on GPUs, or on CPUs over gloo) with mmengine's default
    ``use_orig_params=True``, without vitdense's layer-decay constructor.

    mmengine builds the optimiser after FSDP has replaced the parameters by flat 1-D shards, so a constructor that
    reads parameter shapes (layer decay gives every 1-D parameter no weight decay) would silently mis-group them;
    mmengine 0.10.7's way around that (a pre-built optimiser re-mapped onto the shards) fails with this torch. Frozen
    stages share FSDP's flat parameters with trained ones only with ``use_orig_params=True``. Checkpoints are single
    files (``state_dict_cfg='full'``), which vitdense's atomic checkpoint hook writes.
    """
    strategy = cfg.get('strategy') or {}
    if cfg.get('runner_type') != 'FlexibleRunner' or strategy.get('type') != 'FSDPStrategy':
        return
    if not (strategy.get('model_wrapper') or {}).get('use_orig_params', True):
        raise UserError('FSDPStrategy needs model_wrapper=dict(use_orig_params=True) for frozen stages '
                        '(parameters with and without gradients in one flat parameter)')
    state_dict_cfg = strategy.get('state_dict_cfg', 'local')
    if state_dict_cfg != 'full':
        raise UserError(f'FSDPStrategy with state_dict_cfg={state_dict_cfg!r} saves a folder of shards per '
                        "checkpoint; vitdense's checkpoints are single files: set strategy.state_dict_cfg='full'")
    if 'LayerDecayOptimWrapperConstructor' in str(cfg.optim_wrapper.get('constructor', '')):
        raise UserError("FSDPStrategy cannot keep layer decay's per-parameter groups (mmengine builds the optimiser "
                        'on flattened shards); use strategy=dict(type=\'DDPStrategy\') or drop the constructor')


def set_mixed_precision(cfg: Config, precision: str) -> None:
    """``--amp fp16``: mmengine's AmpOptimWrapper (float16 autocast, dynamic loss scaling; GPU, NPU, MLU only).
    ``--amp bf16``: :class:`vitdense.engine.BF16AutocastOptimWrapper` (bfloat16 autocast, no loss scaling; CPU too)."""
    from mmengine.device import get_device
    wrapper = cfg.optim_wrapper
    if wrapper.get('type', 'OptimWrapper') not in ('OptimWrapper', 'AmpOptimWrapper',
                                                   'vitdense.BF16AutocastOptimWrapper'):
        raise UserError(f"--amp sets optim_wrapper.type, but this config's is {wrapper.type!r} "
                        '(set its precision in the config instead)')
    if precision == 'fp16':
        if get_device() == 'cpu':
            raise UserError('--amp fp16 needs a GPU (float16 autocast with loss scaling); on a CPU use --amp bf16')
        wrapper.type = 'AmpOptimWrapper'
        wrapper.setdefault('loss_scale', 'dynamic')
    elif precision == 'bf16':
        wrapper.type = 'vitdense.BF16AutocastOptimWrapper'
        for key in ('loss_scale', 'dtype'):  # AmpOptimWrapper's arguments
            wrapper.pop(key, None)
    else:
        raise UserError(f"--amp takes fp16 or bf16, got {precision!r}")


# ---- resuming ------------------------------------------------------------------------------------------------

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
