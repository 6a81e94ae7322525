"""Forward time of BOAT backbones (both layouts) vs vitdense's Swin (same run), and where BOAT's time goes.

    python tools/benchmark_boat.py                       # BOAT-Swin-T (paper and pytorch-boat layouts) vs Swin-T
    python tools/benchmark_boat.py --family cswin --layout paper --sizes 512x512 --repeats 3
    python tools/benchmark_boat.py --compile --sizes 512x512   # all models through torch.compile (inductor)

All models run in eval mode under ``torch.no_grad()`` on random weights (speed does not depend on them), one
warm-up forward then the median of ``--repeats`` timed forwards, interleaved so that every model sees the same
machine load and every BOAT layout is divided by the same Swin runs; on a CPU the median process CPU time of
the same forwards is printed too (steadier when other jobs share the cores). Each line also gives the FLOPs
ratio (multiply-adds, counted on the meta device: the time ratio's arithmetic floor) and the clustering share,
measured by wrapping ``FeatureSpaceLocalAttention.cluster`` (and the whole FSLA forward) with timers during
extra forwards; on a GPU every timer synchronises first. ``--compile`` times the models compiled
(``dynamic=False``; the warm-up forward compiles, which takes minutes for BOAT on a CPU); the timers cannot see
inside a compiled graph, so no shares are printed then.
"""
import argparse
import os
import statistics
import sys
import time
from contextlib import contextmanager

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vitdense.analysis import parse_size  # noqa: E402
from vitdense.analysis.flops import backbone_flops  # noqa: E402
from vitdense.analysis.speed import synchronize, timed_call  # noqa: E402
from vitdense.errors import UserError  # noqa: E402
from vitdense.runtime.errors import run_tool  # noqa: E402
from vitdense.models.backbones import BOATCSWin, BOATSwin, SwinTransformer  # noqa: E402
from vitdense.models.backbones.boat import FeatureSpaceLocalAttention  # noqa: E402


@contextmanager
def fsla_timers(device):
    """Accumulate wall time spent in FSLA.cluster and in whole FSLA forwards while active."""
    totals = {'cluster': 0.0, 'fsla': 0.0}
    cluster, forward = FeatureSpaceLocalAttention.cluster, FeatureSpaceLocalAttention.forward

    def wrap(fn, key):
        def timed(self, *args, **kwargs):
            synchronize(device)
            start = time.perf_counter()
            out = fn(self, *args, **kwargs)
            synchronize(device)
            totals[key] += time.perf_counter() - start
            return out
        return timed
    FeatureSpaceLocalAttention.cluster = wrap(cluster, 'cluster')
    FeatureSpaceLocalAttention.forward = wrap(forward, 'fsla')
    try:
        yield totals
    finally:
        FeatureSpaceLocalAttention.cluster, FeatureSpaceLocalAttention.forward = cluster, forward


def clustering_shares(model, x, repeats):
    """Median (clustering, FSLA) fractions of a model's forward time over ``repeats`` timed forwards."""
    with fsla_timers(x.device) as totals:
        fractions = []
        for _ in range(repeats):
            totals['cluster'] = totals['fsla'] = 0.0
            total = timed_call(model, x)[0]
            fractions.append((totals['cluster'] / total, totals['fsla'] / total))
    return tuple(statistics.median(f[i] for f in fractions) for i in range(2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--family', choices=('swin', 'cswin'), default='swin')
    parser.add_argument('--arch', default='tiny')
    parser.add_argument('--layout', nargs='+', default=['paper', 'pytorch-boat'], choices=('paper', 'pytorch-boat'),
                        help='BOAT layouts to time (default both)')
    parser.add_argument('--cluster-dim', type=int, default=None, help='override the FSLA clustering dim')
    parser.add_argument('--cluster-iters', type=int, default=None, help='override the centroid refinements')
    parser.add_argument('--leaf-size', type=int, default=None)
    parser.add_argument('--sizes', nargs='+', type=parse_size, default=[(800, 1216), (512, 512)])
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (CPU)')
    parser.add_argument('--compile', action='store_true', help='time all models through torch.compile')
    parser.add_argument('--compile-backend', default='inductor', help="torch.compile backend (default inductor)")
    args = parser.parse_args()
    if args.repeats < 1 or args.batch < 1:
        raise UserError('--repeats and --batch must be >= 1')
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    boat_cls = BOATSwin if args.family == 'swin' else BOATCSWin
    overrides = {k: v for k, v in dict(cluster_dim=args.cluster_dim, cluster_iters=args.cluster_iters,
                                       leaf_size=args.leaf_size).items() if v is not None}
    layouts = list(dict.fromkeys(args.layout))
    eager = {layout: boat_cls(arch=args.arch, layout=layout, drop_path_rate=0.0, **overrides).to(device).eval()
             for layout in layouts}
    eager['Swin'] = SwinTransformer(arch=args.arch, drop_path_rate=0.0).to(device).eval()
    compiled = f', compiled ({args.compile_backend})' if args.compile else ''
    print(f'{boat_cls.__name__}-{args.arch} (layouts: {", ".join(layouts)}) vs SwinTransformer-{args.arch}, '
          f'device {device}, threads {torch.get_num_threads()}, batch {args.batch}, '
          f'median of {args.repeats} after 1 warm-up{compiled}, torch {torch.__version__}')
    models = dict(eager)
    if args.compile:
        models = {name: torch.compile(m, backend=args.compile_backend, dynamic=False) for name, m in eager.items()}
    with torch.no_grad():
        for h, w in args.sizes:
            x = torch.randn(args.batch, 3, h, w, device=device)
            flops = {name: backbone_flops(m, (h, w)) for name, m in eager.items()}
            times = {name: [] for name in models}
            for name, model in models.items():
                timed_call(model, x)
            for _ in range(args.repeats):
                for name, model in models.items():
                    times[name].append(timed_call(model, x))
            wall = {name: statistics.median(t[0] for t in ts) for name, ts in times.items()}
            cpu = {name: statistics.median(t[1] for t in ts) for name, ts in times.items()}
            for layout in layouts:
                line = (f'{h}x{w} {layout}: BOAT {wall[layout] * 1000:.0f} ms, Swin {wall["Swin"] * 1000:.0f} ms, '
                        f'ratio {wall[layout] / wall["Swin"]:.2f}x')
                if device.type == 'cpu':  # process CPU time: less sensitive to other jobs sharing the cores
                    line += f' (process CPU time {cpu[layout] / cpu["Swin"]:.2f}x)'
                line += f'; FLOPs {flops[layout] / 1e9:.1f} / {flops["Swin"] / 1e9:.1f} G, ' \
                        f'{flops[layout] / flops["Swin"]:.2f}x'
                if not args.compile:
                    cluster_share, fsla_share = clustering_shares(models[layout], x, max(1, args.repeats // 2))
                    line += f'; FSLA {fsla_share:.0%} of BOAT time, clustering {cluster_share:.0%}'
                print(line)


if __name__ == '__main__':
    run_tool(main)
