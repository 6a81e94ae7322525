"""Time vitdense's Sequencer2D trunk against timm's ``sequencer2d_*`` on the same input, in one run.

Both models hold the same (timm-initialised) weights; each size is timed as the median of ``--repeats``
forward passes under ``torch.no_grad()`` after ``--warmup`` passes, interleaving the models in a rotating
order so drifting machine load and allocator state hit all alike (medians, and minima as a noise check). The
trunk is compared on identical work (timm ``forward_intermediates`` NHWC stage maps vs vitdense
``forward_trunk``, no padding); the full 4-level
pyramid (padding to a multiple of 14, resampling, output norms) is timed too. The ratio columns are
timm_time / vitdense_trunk_time (>= 1.0: vitdense is not slower), of the medians and of the minima (the minima
are the steadier on a shared machine: noise only ever adds time). On a busy CPU, ``--threads 1`` avoids
OpenMP threads spin-waiting for each other. Example::

    python tools/benchmark_sequencer.py --sizes 512x512 800x1216 --repeats 3
"""
import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vitdense.analysis import parse_size  # noqa: E402
from vitdense.analysis.speed import timed_call  # noqa: E402
from vitdense.errors import UserError  # noqa: E402
from vitdense.runtime.errors import run_tool  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='s', choices=['s', 'm', 'l'], help='Sequencer2D size (default: s)')
    parser.add_argument('--sizes', nargs='+', type=parse_size, default=[(512, 512), (800, 1216)],
                        help='input sizes HxW, batch 1 (default: 512x512 800x1216)')
    parser.add_argument('--repeats', type=int, default=3, help='timed passes per model and size; the median '
                        'is reported (default: 3)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed passes per model and size first (default: 1)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='torch device (default: cuda if available, else cpu)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    return parser.parse_args()


def main():
    args = parse_args()
    if args.repeats < 1 or args.warmup < 0:
        raise UserError('--repeats must be >= 1 and --warmup >= 0')
    if args.threads:
        torch.set_num_threads(args.threads)
    import timm
    from vitdense.models.backbones import Sequencer2D

    device = torch.device(args.device)
    ref = timm.create_model(f'sequencer2d_{args.arch}', num_classes=0).eval().to(device)
    ours = Sequencer2D(arch=args.arch, drop_path_rate=0.0).eval().to(device)
    ours.load_state_dict(ref.state_dict(), strict=False)

    models = {
        'timm': lambda x: ref.forward_intermediates(x, intermediates_only=True, output_fmt='NHWC'),
        'vitdense_trunk': lambda x: ours.forward_trunk(x),
        'vitdense_pyramid': lambda x: ours(x),
    }
    print(f'Sequencer2D-{args.arch.upper()} on {device} ({torch.get_num_threads()} CPU threads), batch 1, '
          f'median of {args.repeats} after {args.warmup} warm-up, torch {torch.__version__}, timm {timm.__version__}')
    rows = []
    with torch.no_grad():
        for hw in args.sizes:
            x = torch.randn(1, 3, *hw, device=device)
            err = max(((a - b).norm() / b.norm()).item()
                      for a, b in zip(models['vitdense_trunk'](x), models['timm'](x)))
            for _ in range(args.warmup):
                for fn in models.values():
                    fn(x)
            times = {name: [] for name in models}
            order = list(models)
            for _ in range(args.repeats):  # rotate the order: no model always runs right after the same one
                for name in order:
                    times[name].append(timed_call(models[name], x)[0])
                order = order[1:] + order[:1]
            med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
            low = {name: min(t) * 1e3 for name, t in times.items()}
            rows.append((f'{hw[0]}x{hw[1]}', med['timm'], med['vitdense_trunk'], med['timm'] / med['vitdense_trunk'],
                         low['timm'], low['vitdense_trunk'], low['timm'] / low['vitdense_trunk'],
                         med['vitdense_pyramid'], err))
    header = ('input', 'timm ms', 'vitdense trunk ms', 'timm/vitdense', 'timm min ms', 'vitdense trunk min ms',
              'timm/vitdense (min)', 'vitdense pyramid ms', 'max rel err')
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '|'.join('---' for _ in header) + '|')
    for size, t_ref, t_ours, ratio, min_ref, min_ours, min_ratio, t_pyr, err in rows:
        print(f'| {size} | {t_ref:.1f} | {t_ours:.1f} | {ratio:.2f}x | {min_ref:.1f} | {min_ours:.1f} '
              f'| {min_ratio:.2f}x | {t_pyr:.1f} | {err:.1e} |')


if __name__ == '__main__':
    run_tool(main)
