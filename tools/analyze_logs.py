"""Plot training curves (losses, learning rate, validation metrics) from mmengine's JSON logs to a PNG.

    python tools/analyze_logs.py LOG [LOG ...] [--keys loss bbox_mAP] [--out curves.png] [--legend A B]

LOG is a ``vis_data/scalars.json`` (or the ``<timestamp>.json`` next to it) that mmengine writes during
training, a run folder ``WORK_DIR/<timestamp>``, or a work dir (its latest run is taken). Each line of
those files is one JSON record, training records every logging interval (``loss``, ``loss_*``, ``lr``,
``iter``...) and validation records after each evaluation (``coco/bbox_mAP``, ``mIoU``...), all with ``step``.
A key matches a record's key exactly or as its last ``/`` part (``bbox_mAP`` matches ``coco/bbox_mAP``).
One panel per key, one curve per log; the last / best values are printed.
"""
import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vitdense.errors import UserError  # noqa: E402
from vitdense.runtime.errors import run_tool  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('logs', nargs='+', help='scalars.json / <timestamp>.json files, run folders or work dirs')
    parser.add_argument('--keys', nargs='+', default=['loss'],
                        help='what to plot, e.g. loss loss_cls lr bbox_mAP segm_mAP mIoU (default: loss)')
    parser.add_argument('--out', default='curves.png', help='PNG to write (default: curves.png)')
    parser.add_argument('--legend', nargs='+', help='one label per LOG (default: the run folder names)')
    parser.add_argument('--title', help='figure title')
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def resolve_log(path: str) -> str:
    """The JSON scalar log for a file, a run folder or a work dir (latest run)."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise UserError(f'log not found: {path}')
    for pattern in ('vis_data/scalars.json', '*/vis_data/scalars.json'):
        found = sorted(glob.glob(os.path.join(path, pattern)))
        if found:
            return found[-1]  # run folders are timestamps: the last sorts latest
    raise UserError(f'no vis_data/scalars.json under {path} (is it an mmengine work dir or run folder?)')


def read_records(path: str) -> list:
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f'{path}:{number} is not a JSON record; pass the .json log, not the .log '
                                'text log') from None
            if isinstance(record, dict):
                records.append(record)
    if not records:
        raise UserError(f'{path} holds no log records')
    return records


def match_key(wanted: str, available) -> list:
    if wanted in available:
        return [wanted]
    if '/' in wanted:
        return []
    return sorted(k for k in available if k.rsplit('/', 1)[-1] == wanted)


def extract(records: list, wanted: str, path: str):
    """{record key: (steps, values)} for every key of the records matching ``wanted``."""
    available = {k for r in records for k in r}
    keys = match_key(wanted, available)
    series = {}
    for key in keys:
        points = [(r.get('step', i), r[key]) for i, r in enumerate(records)
                  if isinstance(r.get(key), (int, float))]
        if points:
            series[key] = ([p[0] for p in points], [p[1] for p in points])
    return series


def main(argv=None):
    args = parse_args(argv)
    if args.legend and len(args.legend) != len(args.logs):
        raise UserError(f'--legend has {len(args.legend)} labels for {len(args.logs)} logs')
    paths = [resolve_log(p) for p in args.logs]
    labels = args.legend or [os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(p))))
                             if p.endswith('scalars.json') else os.path.basename(p) for p in paths]
    data, available = {}, set()
    for path, label in zip(paths, labels):
        records = read_records(path)
        available.update(k for r in records for k in r)
        data[label] = {key: extract(records, key, path) for key in args.keys}
    skip = {'step', 'iter', 'epoch', 'data_time', 'time', 'memory'}
    for key in args.keys:
        missing = [label for label, per_key in data.items() if not per_key[key]]
        if len(missing) == len(data):
            raise UserError(f"key '{key}' is in none of the logs; they have: {', '.join(sorted(available - skip))}")
        if missing:
            print(f"warning: no '{key}' in {', '.join(missing)}", file=sys.stderr)

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(args.keys), 1, figsize=(8, 3.2 * len(args.keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], args.keys):
        for log_index, (label, per_key) in enumerate(data.items()):
            for name_index, (name, (steps, values)) in enumerate(per_key[key].items()):
                curve = label if len(per_key[key]) == 1 else f'{label}: {name}'
                ax.plot(steps, values, color=f'C{log_index % 10}', linestyle=['-', '--', ':', '-.'][name_index % 4],
                        marker='o' if len(steps) < 20 else None, markersize=3, label=curve)
                best = max(values) if 'loss' not in name else min(values)
                print(f'{label:<30} {name:<28} {len(values):>5} points, last {values[-1]:.4f}, '
                      f'{"min" if "loss" in name else "max"} {best:.4f}')
        ax.set_ylabel(key)
        ax.set_xlabel('step (iteration; epoch for validation of epoch-based runs)')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    print(f'wrote {args.out}')
    return data


if __name__ == '__main__':
    run_tool(main)
