"""How well do a backbone's weights transfer? Frozen-feature probes and a short dense fine-tune.

The pieces tools/transfer_eval.py puts together (each usable on its own):

* :func:`make_coco_crops_dataset`: an ImageNet-format classification folder (``train/<class>/*.jpg``,
  ``val/<class>/*.jpg``) cut from COCO instance boxes: each non-crowd box, widened by some context and made
  square, resized to ``size`` pixels; its category name is its class. The split is deterministic (every
  ``val_every``-th crop of a class, by annotation id, goes to val; a class always gets one val crop) and
  classes with fewer than ``min_per_class`` crops are dropped.
* :func:`extract_features`: a backbone (any vitdense backbone, built from a config's ``model.backbone``
  with a checkpoint or from scratch) in eval mode; the global average of its last output map, per image.
  Backbones with two window semantics run the classification one (:func:`probe_backbone_cfg`): at 224 px
  a Swin probe computes exactly the network of a timm / official ImageNet checkpoint.
* :func:`linear_probe`: multinomial logistic regression on standardised frozen features, full batch,
  L-BFGS, L2 penalty: deterministic, a second on CPU. :func:`knn_classify`: cosine k-NN with
  similarity-weighted votes (exp(s / 0.07), as in DINO's k-NN evaluation).
* :func:`dense_finetune`: the pair's backbone put into a detection / segmentation config (the neck's and
  heads' input channels are set from the backbone's output), trained for N iterations with the mmengine
  runner, then validated: COCO AP or mIoU.
* :func:`write_report`: one markdown table, the same as CSV, and a bar chart (PNG) per metric.
"""
import copy
import csv
import inspect
import json
import math
import os
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from vitdense.errors import ConfigError, UserError
from vitdense.runtime.config import build_model, load_config

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.tif', '.tiff', '.webp')
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


# ---- the classification folder --------------------------------------------------------------------------
def _class_folder(name: str) -> str:
    return name.strip().replace(' ', '_').replace('/', '_')


def make_coco_crops_dataset(ann_file: str, img_root: str, out_dir: str, size: int = 112, context: float = 0.15,
                            min_box: int = 12, min_per_class: int = 2, val_every: int = 3) -> dict:
    """Write an ImageNet-format folder of COCO instance crops; return its summary (also in crops.json).

    Args:
        ann_file: COCO instances json. img_root: folder its ``file_name`` entries are relative to.
        size: side of the square crops, in pixels. context: margin added on each side, as a fraction of
            the box's longer side. min_box: boxes whose shorter side is below this many pixels are skipped.
        min_per_class: classes with fewer crops are dropped. val_every: every n-th crop of a class is val.
    """
    from PIL import Image
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'COCO annotation file not found: {ann_file}')
    with open(ann_file) as f:
        coco = json.load(f)
    images = {img['id']: img for img in coco['images']}
    names = {cat['id']: cat['name'] for cat in coco['categories']}
    per_class: Dict[str, List[dict]] = {}
    skipped_small = 0
    for ann in sorted(coco['annotations'], key=lambda a: a['id']):
        if ann.get('iscrowd', 0):
            continue
        x, y, w, h = ann['bbox']
        if min(w, h) < min_box:
            skipped_small += 1
            continue
        per_class.setdefault(names[ann['category_id']], []).append(ann)
    kept = {c: anns for c, anns in per_class.items() if len(anns) >= min_per_class}
    dropped = {c: len(anns) for c, anns in per_class.items() if c not in kept}
    if not kept:
        raise UserError(f'no class of {ann_file} has {min_per_class} or more crops of at least {min_box} px; '
                        'lower min_per_class / min_box')
    summary = dict(ann_file=osp.basename(ann_file), size=size, context=context, min_box=min_box,
                   min_per_class=min_per_class, val_every=val_every, classes={}, dropped_classes=dropped,
                   skipped_small_boxes=skipped_small, crops=[])
    opened = {}
    for cls_name, anns in sorted(kept.items()):
        n_val = 0
        for i, ann in enumerate(anns):
            is_val = i % val_every == val_every - 1 or (i == len(anns) - 1 and n_val == 0)
            n_val += is_val
            split = 'val' if is_val else 'train'
            img_info = images[ann['image_id']]
            if img_info['id'] not in opened:
                opened[img_info['id']] = Image.open(osp.join(img_root, img_info['file_name'])).convert('RGB')
            image = opened[img_info['id']]
            x, y, w, h = ann['bbox']
            side = max(w, h) * (1 + 2 * context)
            cx, cy = x + w / 2, y + h / 2
            box = tuple(int(round(v)) for v in (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
            # Image.crop fills outside the image with black: paste the in-image part onto mean grey instead
            inner = (max(box[0], 0), max(box[1], 0), min(box[2], image.width), min(box[3], image.height))
            canvas = Image.new('RGB', (box[2] - box[0], box[3] - box[1]), (124, 116, 104))
            canvas.paste(image.crop(inner), (inner[0] - box[0], inner[1] - box[1]))
            crop = canvas.resize((size, size), Image.BICUBIC)
            folder = osp.join(out_dir, split, _class_folder(cls_name))
            os.makedirs(folder, exist_ok=True)
            file_name = f"{ann['image_id']:012d}_{ann['id']:06d}.jpg"
            crop.save(osp.join(folder, file_name), quality=95)
            summary['crops'].append(dict(split=split, cls=cls_name, file=f'{split}/{_class_folder(cls_name)}/'
                                         f'{file_name}', ann_id=ann['id'], image_id=ann['image_id'],
                                         bbox=[round(v, 2) for v in ann['bbox']]))
        summary['classes'][cls_name] = dict(train=len(anns) - n_val, val=n_val)
    with open(osp.join(out_dir, 'crops.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    return summary


def list_image_folder(root: str, classes: Optional[Sequence[str]] = None) -> Tuple[List[str], List[int], List[str]]:
    """(paths, labels, classes) of a ``root/<class>/*`` folder; classes sorted by name unless given."""
    if not osp.isdir(root):
        raise FileNotFoundError(f'image folder not found: {root} (expected {root}/<class>/<image>)')
    if classes is None:
        classes = sorted(d for d in os.listdir(root) if osp.isdir(osp.join(root, d)))
    paths, labels = [], []
    for label, cls_name in enumerate(classes):
        folder = osp.join(root, cls_name)
        if not osp.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                paths.append(osp.join(folder, name))
                labels.append(label)
    if not paths:
        raise FileNotFoundError(f'no images under {root}/<class>/ (extensions {", ".join(IMAGE_EXTENSIONS)})')
    return paths, labels, list(classes)


# ---- backbones from configs -----------------------------------------------------------------------------
@dataclass
class Candidate:
    """One (config, checkpoint) pair to evaluate; ``checkpoint`` None means random init (scratch)."""
    config: str
    checkpoint: Optional[str] = None
    name: str = ''

    def __post_init__(self):
        if self.checkpoint in ('none', 'None', 'scratch', ''):
            self.checkpoint = None
        if not self.name:
            stem = osp.splitext(osp.basename(self.config))[0]
            ckpt = osp.splitext(osp.basename(self.checkpoint))[0] if self.checkpoint else 'scratch'
            self.name = f'{stem} | {ckpt}'


def backbone_cfg(cfg, checkpoint: Optional[str]) -> dict:
    """The config's ``model.backbone``, loading ``checkpoint`` through its ``init_cfg`` (None: from scratch)."""
    if not isinstance(cfg.model.get('backbone'), dict):
        raise ConfigError(f'{cfg.filename} has no model.backbone; pass a vitdense detection / segmentation / '
                          'classification config')
    bb = copy.deepcopy(cfg.model.backbone.to_dict() if hasattr(cfg.model.backbone, 'to_dict')
                       else dict(cfg.model.backbone))
    bb['init_cfg'] = dict(type='Pretrained', checkpoint=checkpoint) if checkpoint else None
    return bb


def probe_backbone_cfg(bb: dict) -> dict:
    """``bb`` as the frozen-feature probes build it: a backbone with both window semantics (``always_shift``:
    Swin, BOAT-Swin) gets the classification one (False), the network ImageNet checkpoints were trained as."""
    import vitdense.models  # noqa: F401  (registers the backbones)
    from vitdense.registry import MODELS
    cls = MODELS.get(bb.get('type', ''))
    if cls is not None and 'always_shift' in inspect.signature(cls.__init__).parameters:
        return {**bb, 'always_shift': False}
    return dict(bb)


def probe_backbone(bb: dict, checkpoint: Optional[str], seed: int = 0):
    """(backbone, load notes): the frozen backbone the probes run, :func:`probe_backbone_cfg` of ``bb``, loaded
    from ``checkpoint`` or seeded scratch weights (the same on every run)."""
    torch.manual_seed(seed)
    backbone = build_model({**probe_backbone_cfg(bb), 'init_cfg': None})
    notes = []
    if checkpoint:
        from vitdense.checkpoint import load_pretrained
        report = load_pretrained(backbone, checkpoint, logger='silent')
        notes = [f'loaded {len(report.loaded)}, dropped {len(report.dropped)}, missing {len(report.missing)}']
        notes += report.notes
    return backbone, notes


def normalisation(cfg) -> Tuple[Tuple[float, ...], Tuple[float, ...], bool]:
    """(mean, std, rgb) of a config's data preprocessor; ImageNet's and RGB when it names none."""
    dp = cfg.model.get('data_preprocessor') or {}
    mean = tuple(dp.get('mean') or IMAGENET_MEAN)
    std = tuple(dp.get('std') or IMAGENET_STD)
    rgb = bool(dp.get('bgr_to_rgb', dp.get('to_rgb', True))) if dp else True
    return mean, std, rgb


# ---- frozen features ---------------------------------------------------------------------------------------
def load_images(paths: Sequence[str], size: int) -> torch.Tensor:
    """uint8 N x 3 x size x size RGB: shorter side resized to ``size`` (bicubic), then centre-cropped."""
    from PIL import Image
    from vitdense.datasets import read_image
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, path in enumerate(paths):  # decoded as in training: EXIF orientation, 16-bit range checked
        img = Image.fromarray(np.ascontiguousarray(read_image(path)[..., ::-1]))
        scale = size / min(img.size)
        w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
        img = img.resize((w, h), Image.BICUBIC)
        left, top = (w - size) // 2, (h - size) // 2
        out[i] = np.asarray(img.crop((left, top, left + size, top + size)))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def extract_features(backbone, images: torch.Tensor, mean, std, rgb: bool = True, batch_size: int = 32,
                     progress=None) -> torch.Tensor:
    """N x C: global average of the backbone's last output map, backbone in eval mode."""
    backbone.eval()
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    feats = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].float()
        if not rgb:
            x = x.flip(1)
        outs = backbone((x - mean_t) / std_t)
        last = outs[-1] if isinstance(outs, (tuple, list)) else outs
        feats.append(last.float().mean(dim=(2, 3)))
        if progress is not None:
            progress.update(len(x))
    return torch.cat(feats)


# ---- classifiers on frozen features ------------------------------------------------------------------------
def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    k = min(k, scores.shape[1])
    return (scores.topk(k, dim=1).indices == labels[:, None]).any(1).float().mean().item()


def balanced_accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over classes present in ``labels`` of the per-class recall."""
    recalls = [(pred[labels == c] == c).float().mean().item() for c in labels.unique().tolist()]
    return float(np.mean(recalls))


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                 num_classes: int, weight_decay: float = 1e-3, max_iter: int = 200) -> dict:
    """Logistic regression (softmax, L2) on standardised features, full-batch L-BFGS; val metrics."""
    mu, sigma = train_x.mean(0), train_x.std(0, unbiased=False).clamp_min(1e-6)
    xt, xv = ((train_x - mu) / sigma).double(), ((val_x - mu) / sigma).double()
    weight = torch.zeros(xt.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, history_size=20,
                                  line_search_fn='strong_wolfe', tolerance_grad=1e-7, tolerance_change=1e-10)

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(xt @ weight + bias, train_y) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        scores = xv @ weight + bias
        train_acc = ((xt @ weight + bias).argmax(1) == train_y).float().mean().item()
    top5 = topk_accuracy(scores, val_y, 5) if num_classes > 5 else None  # top-5 of <= 5 classes is 100 %
    return dict(top1=topk_accuracy(scores, val_y, 1), top5=top5,
                balanced=balanced_accuracy(scores.argmax(1), val_y), train_top1=train_acc)


def knn_classify(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                 num_classes: int, k: int = 5, temperature: float = 0.07) -> dict:
    """Cosine k-NN on centred, L2-normalised features, votes weighted by exp(similarity / T)."""
    mu = train_x.mean(0)
    xt, xv = F.normalize(train_x - mu, dim=1), F.normalize(val_x - mu, dim=1)
    k = min(k, len(xt))
    sims, idx = (xv @ xt.T).topk(k, dim=1)
    votes = torch.zeros(len(xv), num_classes).scatter_add_(1, train_y[idx], (sims / temperature).exp())
    return dict(top1=topk_accuracy(votes, val_y, 1), balanced=balanced_accuracy(votes.argmax(1), val_y), k=k)


# ---- a short dense fine-tune ------------------------------------------------------------------------------
def output_channels(backbone, size: int = 64) -> List[int]:
    backbone.eval()
    side = max(size, getattr(backbone, 'min_input_size', 32))
    with torch.no_grad():
        outs = backbone(torch.zeros(1, getattr(backbone, 'in_channels', 3), side, side))
    return [o.shape[1] for o in outs]


def dense_backbone_cfg(bb: dict, dense_bb: dict) -> dict:
    """The candidate backbone ``bb`` as the dense config wants it. Same type as the dense config's backbone:
    the dense config's ``out_indices`` and any option it sets that ``bb`` leaves out (e.g. ``norm_eval``);
    another type: ``bb`` with its default ``out_indices`` (the stride 4 / 8 / 16 / 32 pyramid). The window
    semantics (``always_shift``) are the dense task's either way: the dense config's, else the backbone's
    default (mmdet's), also when ``bb`` comes from a classification config."""
    bb = {k: v for k, v in bb.items() if k != 'always_shift'}
    if bb.get('type') == dense_bb.get('type'):
        merged = {**{k: v for k, v in dense_bb.items() if k not in bb}, **bb}
        if 'out_indices' in dense_bb:
            merged['out_indices'] = dense_bb['out_indices']
        return merged
    return {k: v for k, v in bb.items() if k != 'out_indices'}


def fit_dense_config(dense_cfg, bb: dict, channels: Sequence[int], mean=None, std=None):
    """Put backbone ``bb`` (returning maps with ``channels``) into a detection / segmentation config: the
    neck's / decode heads' input channels follow it, and so does the pixel normalisation when given."""
    cfg = copy.deepcopy(dense_cfg)
    cfg.model.backbone = bb
    model = cfg.model
    if model.get('neck') is not None and 'in_channels' in model.neck:
        model.neck.in_channels = list(channels)
    for head in ('decode_head', 'auxiliary_head'):
        heads = model.get(head)
        for h in (heads if isinstance(heads, list) else [heads] if heads else []):
            index = h.get('in_index', -1)
            h.in_channels = [channels[i] for i in index] if isinstance(index, (list, tuple)) else channels[index]
    if mean is not None and model.get('data_preprocessor') is not None:
        model.data_preprocessor.mean, model.data_preprocessor.std = list(mean), list(std)
    return cfg


def dense_finetune(dense_config: str, bb: dict, iters: int, work_dir: str, mean=None, std=None,
                   seed: int = 0, progress=None, cfg_options: Optional[dict] = None) -> Dict[str, float]:
    """Train ``dense_config`` with backbone ``bb`` (its init_cfg loads the checkpoint) for ``iters``
    iterations, then validate; returns the numeric metrics (COCO AP in [0, 1], mIoU in %). ``progress``
    (a tqdm bar) advances by one per training iteration."""
    from mmengine.hooks import Hook
    from mmengine.runner import Runner
    cfg = load_config(dense_config, cfg_options=cfg_options, work_dir=work_dir)
    bb = dense_backbone_cfg(bb, cfg.model.backbone.to_dict())
    channels = output_channels(build_model({**bb, 'init_cfg': None}))
    cfg = fit_dense_config(cfg, bb, channels, mean, std)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters + 1)
    if isinstance(cfg.get('param_scheduler'), list):  # keep the warm-up shorter than the run
        for sched in cfg.param_scheduler:
            if sched.get('type') == 'LinearLR' and not sched.get('by_epoch', True):
                sched['end'] = min(sched.get('end', iters), max(iters // 2, 1))
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10 ** 9, by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=max(iters // 4, 1), log_metric_by_epoch=False)
    cfg.log_level = 'WARNING'
    cfg.randomness = dict(seed=seed)
    runner = Runner.from_cfg(cfg)
    if progress is not None:
        class AdvanceBar(Hook):
            def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
                progress.update(1)
        runner.register_hook(AdvanceBar(), priority='LOWEST')
    runner.train()
    metrics = runner.val()
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, np.floating))}


DENSE_MAIN_METRICS = ('coco/bbox_mAP', 'coco/segm_mAP', 'mIoU', 'aAcc')


# ---- the whole evaluation ----------------------------------------------------------------------------------
@dataclass
class TransferResult:
    name: str
    config: str
    checkpoint: Optional[str]
    feature_dim: int = 0
    probe: dict = field(default_factory=dict)
    knn: dict = field(default_factory=dict)
    dense: dict = field(default_factory=dict)
    load_notes: List[str] = field(default_factory=list)
    seconds: float = 0.0


def evaluate(candidates: Sequence[Candidate], data_root: str, size: int = 96, knn_k: int = 5,
             probe_wd: float = 1e-3, dense_config: Optional[str] = None, dense_iters: int = 0,
             dense_cfg_options: Optional[dict] = None, work_dir: str = 'work_dirs/transfer', batch_size: int = 32,
             progress: bool = True, seed: int = 0) -> List[TransferResult]:
    from tqdm import tqdm
    train_paths, train_labels, classes = list_image_folder(osp.join(data_root, 'train'))
    val_paths, val_labels, _ = list_image_folder(osp.join(data_root, 'val'), classes)
    train_images, val_images = load_images(train_paths, size), load_images(val_paths, size)
    train_y, val_y = torch.tensor(train_labels), torch.tensor(val_labels)
    # progress in steps: one per image through each frozen backbone, one per dense training iteration
    per_candidate = len(train_images) + len(val_images) + (dense_iters if dense_config else 0)
    bar = tqdm(total=per_candidate * len(candidates), desc='transfer', unit='step', disable=not progress,
               dynamic_ncols=True)
    results = []
    for cand in candidates:
        start = time.time()
        bar.set_postfix_str(cand.name[:48])
        cfg = load_config(cand.config)
        bb = backbone_cfg(cfg, cand.checkpoint)
        backbone, notes = probe_backbone(bb, cand.checkpoint, seed)
        mean, std, rgb = normalisation(cfg)
        feats_t = extract_features(backbone, train_images, mean, std, rgb, batch_size, bar)
        feats_v = extract_features(backbone, val_images, mean, std, rgb, batch_size, bar)
        result = TransferResult(cand.name, cand.config, cand.checkpoint, feature_dim=feats_t.shape[1],
                                load_notes=notes)
        result.probe = linear_probe(feats_t, train_y, feats_v, val_y, len(classes), weight_decay=probe_wd)
        result.knn = knn_classify(feats_t, train_y, feats_v, val_y, len(classes), k=knn_k)
        if dense_config and dense_iters:
            safe = ''.join(c if c.isalnum() or c in '-_.' else '_' for c in cand.name)
            torch.manual_seed(seed)
            result.dense = dense_finetune(dense_config, bb, dense_iters, osp.join(work_dir, 'dense', safe),
                                          mean, std, seed, progress=bar, cfg_options=dense_cfg_options)
        result.seconds = time.time() - start
        results.append(result)
    bar.close()
    return results


def result_rows(results: Sequence[TransferResult]) -> Tuple[List[str], List[List[str]]]:
    dense_keys = sorted({k for r in results for k in r.dense}, key=lambda k: (
        DENSE_MAIN_METRICS.index(k) if k in DENSE_MAIN_METRICS else len(DENSE_MAIN_METRICS), k))
    dense_keys = [k for k in dense_keys if k in DENSE_MAIN_METRICS] or dense_keys[:2]
    with_top5 = any(r.probe.get('top5') is not None for r in results)
    header = (['model', 'checkpoint', 'dim', 'probe top-1', 'probe balanced'] + ['probe top-5'] * with_top5
              + ['k-NN top-1', 'k-NN balanced'] + dense_keys + ['seconds'])

    def pct(v):
        return '-' if v is None else f'{100 * v:.1f}'

    def dense(r, k):  # mmdet reports AP in [0, 1]; mmseg mIoU / aAcc already in %
        return '-' if k not in r.dense else f"{r.dense[k] * (100 if k.startswith('coco/') else 1):.1f}"

    rows = []
    for r in results:
        checkpoint = osp.basename(r.checkpoint) if r.checkpoint else 'none (scratch)'  # full path in the json
        rows.append([r.name, checkpoint, str(r.feature_dim), pct(r.probe['top1']), pct(r.probe['balanced'])]
                    + [pct(r.probe.get('top5'))] * with_top5
                    + [pct(r.knn['top1']), pct(r.knn['balanced'])] + [dense(r, k) for k in dense_keys]
                    + [f'{r.seconds:.0f}'])
    return header, rows


def write_report(results: Sequence[TransferResult], out_dir: str, title: str = 'Transfer evaluation',
                 data_summary: str = '') -> Dict[str, str]:
    """transfer.md, transfer.csv and transfer.png in ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    header, rows = result_rows(results)
    paths = {k: osp.join(out_dir, f'transfer.{k}') for k in ('md', 'csv', 'png', 'json')}
    with open(paths['csv'], 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    lines = [f'# {title}', '']
    if data_summary:
        lines += [data_summary, '']
    lines += ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    lines += ['', 'Accuracies in %, on the val split; probe: logistic regression on frozen, globally pooled '
              'last-level features; k-NN: cosine, similarity-weighted votes; dense metrics (COCO AP / mIoU, '
              'in %) after the short fine-tune.']
    with open(paths['md'], 'w') as f:
        f.write('\n'.join(lines) + '\n')
    with open(paths['json'], 'w') as f:
        json.dump([r.__dict__ for r in results], f, indent=1, default=str)
    plot(header, rows, paths['png'], title)
    return paths


def plot(header: List[str], rows: List[List[str]], path: str, title: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    metrics = [h for h in header[3:-1] if h not in ('probe top-5',)]
    values = np.array([[float(r[header.index(m)]) if r[header.index(m)] != '-' else 0.0 for m in metrics]
                       for r in rows])
    n_models = len(rows)
    width = 0.8 / max(n_models, 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(metrics) + 2), 4.2))
    x = np.arange(len(metrics))
    for i, row in enumerate(rows):
        bars = ax.bar(x + (i - (n_models - 1) / 2) * width, values[i], width, label=row[0])
        ax.bar_label(bars, fmt='%.0f', fontsize=7, padding=1)
    ax.set_xticks(x, metrics, rotation=15)
    ax.set_ylabel('%')
    ax.set_ylim(0, max(100, math.ceil(values.max() / 10) * 10 if values.size else 100) * 1.08)
    ax.set_title(title)
    ax.legend(fontsize=7, loc='upper center', bbox_to_anchor=(0.5, -0.18), ncol=min(n_models, 2))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
