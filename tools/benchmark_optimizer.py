"""The optimiser step of a config's model, for several parameter-group layouts and AdamW kernels, interleaved.

    python tools/benchmark_optimizer.py CONFIG [--repeats N] [--threads N]

Each variant gets its own copy of the model (random weights) and the same gradients; steps are interleaved
(a, b, c, ... per round) so a change of machine load hits all alike. Printed per variant: wall and CPU seconds
(minimum and median), the speed-up of the minima over the config's own optimiser as mmengine's default
constructor builds it, and how far its weights end from that baseline's (0: bitwise equal).
"""
import argparse
import copy
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vitdense.errors import UserError  # noqa: E402
from vitdense.runtime.config import load_config  # noqa: E402
from vitdense.runtime.errors import run_tool  # noqa: E402

MERGED = 'vitdense.MergedGroupsOptimWrapperConstructor'
# label -> (constructor, optimizer overrides); the first is the baseline
VARIANTS = {
    'default groups, for-loop': ('DefaultOptimWrapperConstructor', dict(foreach=False, fused=None)),
    'merged groups, for-loop': (MERGED, dict(foreach=False, fused=None)),
    'merged groups, foreach': (MERGED, dict(foreach=True, fused=None)),
    'default groups, fused': ('DefaultOptimWrapperConstructor', dict(foreach=None, fused=True)),
    'merged groups, fused': (MERGED, dict(foreach=None, fused=True)),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='a training config with an AdamW / Adam optim_wrapper')
    parser.add_argument('--repeats', type=int, default=4, help='timed rounds (default: 4)')
    parser.add_argument('--threads', type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        raise UserError('--repeats must be >= 1')
    import torch
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    from vitdense.analysis.speed import set_threads
    from vitdense.runtime.config import build_model
    set_threads(args.threads)
    cfg = load_config(args.config)
    if cfg.get('optim_wrapper', {}).get('optimizer', {}).get('type') not in ('AdamW', 'Adam'):
        raise UserError(f'{args.config}: the variants are AdamW / Adam kernels; this config uses '
                        f"{cfg.get('optim_wrapper', {}).get('optimizer', {}).get('type')}")
    init_default_scope(cfg.default_scope)
    model = build_model(cfg)
    torch.manual_seed(0)
    grads = [torch.randn_like(p) * 1e-3 for p in model.parameters() if p.requires_grad]
    copies, wrappers = {}, {}
    for label, (constructor, overrides) in VARIANTS.items():
        copies[label] = copy.deepcopy(model)
        optim_cfg = copy.deepcopy(cfg.optim_wrapper)
        optim_cfg['constructor'] = constructor
        optim_cfg.optimizer.update(overrides)
        wrappers[label] = build_optim_wrapper(copies[label], optim_cfg)
    wall = {label: [] for label in VARIANTS}
    cpu = {label: [] for label in VARIANTS}
    for _ in range(args.repeats):
        for label in VARIANTS:
            for p, g in zip((p for p in copies[label].parameters() if p.requires_grad), grads):
                p.grad = g.clone()
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            wrappers[label].step()
            wall[label].append(time.perf_counter() - start_wall)
            cpu[label].append(time.process_time() - start_cpu)
    baseline = next(iter(VARIANTS))
    print(f'{args.config}: {len(grads)} tensors, {sum(g.numel() for g in grads) / 1e6:.1f}M parameters, '
          f'{torch.get_num_threads()} CPU threads, {args.repeats} interleaved rounds')
    print(f'{"variant":<26} {"groups":>6} {"wall min":>9} {"median":>7} {"CPU min":>8} {"median":>7} '
          f'{"speed-up wall / CPU":>20} {"max |w - baseline|":>19}')
    for label in VARIANTS:
        diff = max((a - b).abs().max().item() for a, b in zip(copies[label].parameters(),
                                                              copies[baseline].parameters()))
        print(f'{label:<26} {len(wrappers[label].optimizer.param_groups):>6} {min(wall[label]):>9.3f} '
              f'{statistics.median(wall[label]):>7.3f} {min(cpu[label]):>8.3f} {statistics.median(cpu[label]):>7.3f} '
              f'{min(wall[baseline]) / min(wall[label]):>9.2f}x / {min(cpu[baseline]) / min(cpu[label]):>5.2f}x '
              f'{diff:>19.2e}')
    return wall, cpu


if __name__ == '__main__':
    run_tool(main)
