"""Where one training iteration goes: data, each model part's forward and backward, the optimiser, the hooks.

    python tools/profile_iteration.py CONFIG [--runner-iters K] [--repeats R] [--threads N] [--ops N]
                                      [--cfg-options k=v ...]

Two measurements in one process, on the config's own data, model, optimiser and hooks:

1. the runner: ``K`` training iterations through mmengine's runner (the config's hooks, logging, data loader;
   no validation, no checkpoint), each split into data, forward, backward, optimiser step and hooks, next to the
   iteration time the runner logs (``time`` in the log: from one iteration's end to the next's, data included);
2. a fixed batch: the first batch, trained on ``R`` more times, split into preprocessing, each part's forward
   (backbone, neck, heads, RoI extractors; "other" = targets, sampling and losses outside those modules) and
   backward, the optimiser step and ``zero_grad`` -- the figure to compare code changes with, since every
   repeat does the same work. Times are medians over the repeats after the first.

The runner's iterations differ from the fixed batch by what each batch carries: the number of RoIs the mask
head trains on (positive proposals) grows as the RPN learns, and the image sizes change with the batch; both are
printed per iteration. ``--ops N`` adds torch.profiler's N costliest operators for one more fixed-batch iteration.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from mmengine.config import DictAction  # noqa: E402

from vitdense.errors import UserError  # noqa: E402
from vitdense.runtime.config import load_config  # noqa: E402
from vitdense.runtime.errors import run_tool  # noqa: E402
from vitdense.runtime.launch import build_runner  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='a training config, e.g. configs/swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py')
    parser.add_argument('--runner-iters', type=int, default=6,
                        help='iterations through the runner (default: 6; 0 skips this part)')
    parser.add_argument('--repeats', type=int, default=3,
                        help='fixed-batch iterations; the first is a warm-up (default: 3; 0 skips this part)')
    parser.add_argument('--threads', type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument('--ops', type=int, default=0, metavar='N',
                        help="print torch.profiler's N costliest operators of one fixed-batch iteration")
    parser.add_argument('--clock', choices=('wall', 'cpu'), default='wall',
                        help='fixed batch: wall seconds, or CPU seconds of this process (all its threads; '
                             'steadier while other jobs load the machine)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. optim_wrapper.optimizer.foreach=True')
    return parser


class _Clock:
    """Seconds per label for the current iteration, kept per iteration."""

    def __init__(self):
        self.iterations = []
        self.current = defaultdict(float)
        self.counts = defaultdict(int)

    def add(self, label, seconds):
        self.current[label] += seconds

    def next_iteration(self):
        self.iterations.append((dict(self.current), dict(self.counts)))
        self.current.clear()
        self.counts.clear()


def _timed(clock, label, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            clock.add(label, time.perf_counter() - start)
    return wrapper


def _count_rois(clock, parts):
    """Count the RoIs each RoI extractor pools (its second argument)."""
    handles = []
    for name, module in parts.items():
        if name.endswith('roi_extractor'):
            def hook(module, args, name=name):
                if len(args) > 1 and hasattr(args[1], 'shape'):
                    clock.counts[name.split('.')[-1].replace('_roi_extractor', ' RoIs')] += int(args[1].shape[0])
            handles.append(module.register_forward_pre_hook(hook))
    return handles


def profile_runner(runner, iters, parts_timer_cls, parts):
    """Train ``iters`` iterations through the runner with every piece of an iteration timed."""
    clock = _Clock()
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    timer = parts_timer_cls(parts)
    original_call_hook = runner.call_hook

    def call_hook(fn_name, **kwargs):
        start = time.perf_counter()
        try:
            return original_call_hook(fn_name, **kwargs)
        finally:
            if fn_name in ('before_train_iter', 'after_train_iter'):
                clock.add('hooks', time.perf_counter() - start)
            if fn_name == 'after_train_iter':
                clock.next_iteration()
    runner.call_hook = call_hook  # this runner only
    handles = _count_rois(clock, parts)
    original_train_step = model.train_step

    def train_step(data, optim_wrapper):
        start = time.perf_counter()
        wrapper_backward, wrapper_step = optim_wrapper.backward, optim_wrapper.step
        optim_wrapper.backward = _timed(clock, 'backward', wrapper_backward)
        optim_wrapper.step = _timed(clock, 'optimizer step', wrapper_step)
        try:
            with timer.track():
                return original_train_step(data, optim_wrapper)
        finally:
            del optim_wrapper.backward, optim_wrapper.step
            total = time.perf_counter() - start
            clock.add('train_step', total)
    model.train_step = train_step
    loop = runner.train_loop
    original_next = None

    class _TimedIterator:
        def __init__(self, inner):
            self.inner = inner

        def __iter__(self):
            return self

        def __next__(self):
            start = time.perf_counter()
            try:
                return next(self.inner)
            finally:
                clock.add('data (loader)', time.perf_counter() - start)

        def __getattr__(self, name):
            return getattr(self.inner, name)
    original_next = loop.dataloader_iterator
    loop.dataloader_iterator = _TimedIterator(original_next)
    try:
        runner.train()
    finally:
        for h in handles:
            h.remove()
        del model.train_step
        runner.call_hook = original_call_hook
    logged = list(runner.message_hub.get_scalar('train/time').data[0])
    return clock.iterations, logged


def profile_fixed_batch(runner, cfg, repeats, parts, ops, clock=time.perf_counter):
    """The config's first batch trained on ``repeats`` times; per-part forward / backward, optimiser, zero_grad."""
    import torch

    from vitdense.analysis.iteration import first_batches
    from vitdense.analysis.profiling import PartTimer
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    optim_wrapper = runner.optim_wrapper
    start = clock()
    # a loader of its own: a second iterator over the runner's (mmdet's aspect-ratio batch sampler over an
    # infinite sampler) can wait forever for a batch
    batch = first_batches(cfg, 1)[0]
    data_s = clock() - start
    rows = []
    op_table = None
    for i in range(repeats + (1 if ops else 0)):
        timer = PartTimer(parts, clock)
        t = {}
        profiler = torch.profiler.profile() if i == repeats else None
        if profiler is not None:
            profiler.__enter__()
        start = clock()
        with timer.track(), optim_wrapper.optim_context(model):
            data = model.data_preprocessor(batch, True)
            t['preprocess'] = clock() - start
            losses = model._run_forward(data, mode='loss')
        loss, _ = model.parse_losses(losses)
        t['forward'] = clock() - start - t['preprocess']
        timer.start_backward(loss)
        mark = clock()
        optim_wrapper.backward(loss)
        timer.end_backward()
        t['backward'] = clock() - mark
        mark = clock()
        optim_wrapper.step()
        t['optimizer step'] = clock() - mark
        mark = clock()
        optim_wrapper.zero_grad()
        t['zero_grad'] = clock() - mark
        if profiler is not None:
            profiler.__exit__(None, None, None)
            op_table = profiler.key_averages().table(sort_by='self_cpu_time_total', row_limit=ops)
            continue
        rows.append((t, dict(timer.forward_s), dict(timer.backward_s)))
    return data_s, batch, rows, op_table


def _median(values):
    return statistics.median(values) if values else 0.0


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.runner_iters < 0 or args.repeats < 0 or (args.runner_iters == 0 and args.repeats == 0):
        raise UserError('--runner-iters and --repeats must be >= 0, and one of them > 0')
    import torch

    from vitdense.analysis.profiling import PartTimer, model_parts
    from vitdense.analysis.speed import set_threads
    set_threads(args.threads)
    work_dir = tempfile.mkdtemp(prefix='profile_iteration_')
    cfg = load_config(args.config, args.cfg_options, work_dir=work_dir)
    if 'train_dataloader' not in cfg or 'optim_wrapper' not in cfg:
        raise UserError(f'{args.config} has no train_dataloader / optim_wrapper: profile a training config')
    iters = max(args.runner_iters, 1)
    cfg.train_cfg = dict(cfg.train_cfg, max_iters=iters, val_interval=iters + 1)
    cfg.train_cfg.pop('max_epochs', None)
    cfg.train_cfg['type'] = 'IterBasedTrainLoop'
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if cfg.get('default_hooks', {}).get('checkpoint'):
        cfg.default_hooks.checkpoint.update(interval=10 ** 9, by_epoch=False, save_last=False)
    cfg.param_scheduler = [dict(p, by_epoch=False) for p in cfg.get('param_scheduler') or []] or None
    cfg.log_level = 'WARNING'  # the tables below, not the runner's log
    runner = build_runner(cfg)
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    parts = model_parts(model)
    print(f'{args.config}: {torch.get_num_threads()} CPU threads, parts: {", ".join(parts)}')

    if args.runner_iters:
        print(f'\n== the runner: {args.runner_iters} iterations (config hooks and logging; no validation or '
              'checkpoint) ==')
        iterations, logged = profile_runner(runner, args.runner_iters, PartTimer, parts)
        head = (f'{"iter":>4} {"logged":>8} {"data":>7} {"fwd":>7} {"bwd":>7} {"optim":>7} {"hooks":>7} '
                f'{"rest":>7}  RoIs (bbox / mask)')
        print(head)
        for i, ((t, counts), log_s) in enumerate(zip(iterations, logged), 1):
            fwd = t.get('train_step', 0) - t.get('backward', 0) - t.get('optimizer step', 0)
            known = t.get('data (loader)', 0) + t.get('train_step', 0) + t.get('hooks', 0)
            print(f'{i:>4} {log_s:>8.2f} {t.get("data (loader)", 0):>7.2f} {fwd:>7.2f} {t.get("backward", 0):>7.2f} '
                  f'{t.get("optimizer step", 0):>7.2f} {t.get("hooks", 0):>7.2f} {log_s - known:>7.2f}  '
                  f'{counts.get("bbox RoIs", 0)} / {counts.get("mask RoIs", 0)}')
        later = logged[1:] or logged
        print(f'logged iteration time, iterations 2-{len(logged)}: median {_median(later):.2f} s '
              f'(rest = logged - data - train step - hooks: the loop and the timer itself)')

    if args.repeats:
        if not args.runner_iters:  # what runner.train() would have built
            runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
            runner._init_model_weights()
            model.train()
        clock = time.process_time if args.clock == 'cpu' else time.perf_counter
        data_s, batch, rows, op_table = profile_fixed_batch(runner, cfg, args.repeats, parts, args.ops, clock)
        shapes = ', '.join('x'.join(map(str, img.shape)) for img in batch['inputs'])
        print(f'\n== a fixed batch ({shapes}), trained on {args.repeats} times; medians of repeats 2-{args.repeats}, '
              f'{args.clock} seconds ==')
        used = rows[1:] or rows
        steps = {k: _median([r[0][k] for r in used]) for k in used[0][0]}
        total = sum(steps.values())
        fwd_parts = {k: _median([r[1].get(k, 0.0) for r in used]) for k in parts}
        bwd_keys = sorted({k for r in used for k in r[2]}, key=lambda k: -_median([r[2].get(k, 0.0) for r in used]))
        bwd_parts = {k: _median([r[2].get(k, 0.0) for r in used]) for k in bwd_keys}
        lines = [('data: loader start + load + pipeline (one batch, not repeated)', data_s),
                 ('preprocess', steps['preprocess'])]
        lines += [(f'forward  {k}', v) for k, v in fwd_parts.items()]
        lines.append(('forward  other (targets, sampling, losses)', steps['forward'] - sum(fwd_parts.values())))
        lines += [(f'backward {k}', v) for k, v in bwd_parts.items()]
        lines += [('optimizer step', steps['optimizer step']), ('zero_grad', steps['zero_grad'])]
        from vitdense.analysis.profiling import split_table
        print(split_table(lines, total + data_s))
        print(f'train step total (preprocess + forward + backward + step + zero_grad): {total:.3f} s; '
              f'forward {steps["forward"]:.3f} s, backward {steps["backward"]:.3f} s')
        if op_table:
            print(f'\ntorch.profiler, one more fixed-batch iteration, top {args.ops} operators by self CPU time:')
            print(op_table)


if __name__ == '__main__':
    run_tool(main)
