"""Compare how backbones transfer: frozen-feature linear probe and k-NN, plus an optional short dense fine-tune.

    python tools/transfer_eval.py --data data/mini/coco_crops_mini \\
        --model configs/timm/tf-efficientnet-lite0_mini-coco-crops.py none \\
        --model configs/timm/tf-efficientnet-lite0_mini-coco-crops.py checkpoints/effnet-lite0_backbone.pth \\
        [--dense-config configs/timm/mask-rcnn_tf-efficientnet-lite0_fpn_mini-coco.py --dense-iters 20] \\
        [--out-dir work_dirs/transfer]

--model CONFIG CHECKPOINT (repeatable): the backbone is CONFIG's model.backbone (any vitdense config: detection,
segmentation or classification), loaded from CHECKPOINT through vitdense.checkpoint (any layout its family
reads), or random ('none': scratch, seeded). Pixels are normalised with CONFIG's data_preprocessor mean / std.

(a) Every image of DATA/train and DATA/val (<class>/<image> folders, ImageNet layout; e.g. made by
    tools/make_coco_crops.py) is resized (short side --size) and centre-cropped, the frozen backbone's last
    output map is average-pooled, and two classifiers are fitted on the train features: a logistic-regression
    linear probe (L-BFGS, L2 --probe-wd) and a cosine k-NN (--knn-k). Val top-1, class-balanced accuracy
    (and top-5 when there are more than 5 classes) are reported. Swin / BOAT-Swin run classification windows
    here (always_shift=False) whatever CONFIG's task: at --size 224 the probed last-stage map is exactly the
    one of the network a timm / official ImageNet checkpoint was trained as (then vitdense's fresh output
    norm; the checkpoint's final norm, like its head, is not loaded into a backbone). Below 224 (the default
    96 suits the 96 px mini crops) some stage maps are smaller than a window, and no such network exists: the
    probes then compute timm's Swin built for that size, with the checkpoint's relative-position biases read
    as they are.
(b) With --dense-config and --dense-iters N > 0, the backbone (with CHECKPOINT) replaces the dense config's
    backbone, the neck / decode heads take its channels, it is trained for N iterations and validated
    (COCO bbox / segm AP or mIoU).

Writes OUT_DIR/transfer.md (markdown table), transfer.csv, transfer.json (everything measured) and
transfer.png (bars per model, one group per metric). A progress bar shows images / fine-tunes done.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vitdense.runtime.config import DictAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', nargs=2, action='append', required=True, metavar=('CONFIG', 'CHECKPOINT'),
                        help="a backbone to evaluate: a vitdense config and a checkpoint, or 'none' for random "
                             'init; repeat for each model')
    parser.add_argument('--name', action='append', default=[],
                        help='label for the corresponding --model (default: config name | checkpoint name)')
    parser.add_argument('--data', default='data/mini/coco_crops_mini',
                        help='classification folder with train/<class>/ and val/<class>/ '
                             '(default: data/mini/coco_crops_mini, made by tools/make_coco_crops.py)')
    parser.add_argument('--size', type=int, default=96,
                        help='input side in pixels for the probes (default 96; 224 probes a Swin ImageNet '
                             'checkpoint as the exact network it was trained as)')
    parser.add_argument('--knn-k', type=int, default=5, help='neighbours for k-NN (default 5)')
    parser.add_argument('--probe-wd', type=float, default=1e-3, help='L2 penalty of the linear probe (1e-3)')
    parser.add_argument('--dense-config', help='detection / segmentation config for the short fine-tune (b)')
    parser.add_argument('--dense-iters', type=int, default=0, help='iterations of the dense fine-tune (0: skip)')
    parser.add_argument('--dense-cfg-options', nargs='+', action=DictAction, default={},
                        help='override entries of the dense config, e.g. smaller images: '
                             'train_dataloader.dataset.pipeline.2.scale=(320,240)')
    parser.add_argument('--out-dir', default='work_dirs/transfer', help='where the table, CSV and plot go')
    parser.add_argument('--seed', type=int, default=0, help='seed of the scratch weights and the fine-tune')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    if args.name and len(args.name) != len(args.model):
        parser.error(f'--name given {len(args.name)} times for {len(args.model)} --model entries')
    if args.dense_iters and not args.dense_config:
        parser.error('--dense-iters needs --dense-config')
    return args


def main(argv=None):
    args = parse_args(argv)
    from vitdense.checkpoint import CheckpointError
    from vitdense.transfer import Candidate, evaluate, result_rows, write_report
    names = args.name or [''] * len(args.model)
    candidates = [Candidate(config, ckpt, name) for (config, ckpt), name in zip(args.model, names)]
    for cand in candidates:
        if not os.path.isfile(cand.config):
            return _fail(f'config not found: {cand.config}')
        if cand.checkpoint and not os.path.isfile(cand.checkpoint):
            return _fail(f"checkpoint not found: {cand.checkpoint} (use 'none' for random init)")
    for split in ('train', 'val'):
        if not os.path.isdir(os.path.join(args.data, split)):
            return _fail(f'{args.data}/{split} not found: --data needs train/<class>/ and val/<class>/ folders '
                         '(python tools/make_coco_crops.py makes data/mini/coco_crops_mini)')
    try:
        results = evaluate(candidates, args.data, size=args.size, knn_k=args.knn_k, probe_wd=args.probe_wd,
                           dense_config=args.dense_config, dense_iters=args.dense_iters,
                           dense_cfg_options=args.dense_cfg_options, work_dir=args.out_dir,
                           progress=not args.no_progress, seed=args.seed)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        return _fail(str(err).strip().splitlines()[0])
    summary = (f'Data: {args.data} (train/val image folders), {args.size} px inputs; probe: logistic regression, '
               f'L2 {args.probe_wd}; k-NN k={args.knn_k}'
               + (f'; dense: {args.dense_config}, {args.dense_iters} iterations' if args.dense_iters else ''))
    paths = write_report(results, args.out_dir, data_summary=summary)
    header, rows = result_rows(results)
    width = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print('  '.join(h.ljust(w) for h, w in zip(header, width)))
    for row in rows:
        print('  '.join(c.ljust(w) for c, w in zip(row, width)))
    print(f"wrote {paths['md']}, {paths['csv']}, {paths['png']}")
    return 0


def _fail(message):
    print(f'error: {message}', file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main())
