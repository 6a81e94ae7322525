"""Inference throughput (images/s) and peak memory of a config's backbone or full model, optionally next to
the reference implementation of the same backbone.

    python tools/benchmark.py CONFIG [--backbone-only] [--shape H [W]] [--batch-size B] [--device cpu|cuda]
                              [--warmup N] [--repeats N] [--compare] [--threads N] [--cfg-options k=v ...]

The model gets random weights (no checkpoint needed) and a random batch of the given size; the full model
runs its inference path (``mode='predict'``: detection post-processing, segmentation ``test_cfg`` mode).
Throughput = batch size / median time of ``--repeats`` timed forwards after ``--warmup`` untimed ones.
Peak memory is what one forward adds: ``torch.cuda.max_memory_allocated`` on CUDA, the peak resident set
on CPU (see vitdense.analysis.speed.PeakMemory).

``--compare`` also runs every reference implementation of the backbone (vitdense.analysis.references:
mmdet's and timm's SwinTransformer for vitdense.SwinTransformer, timm's and mmpretrain's ConvNeXt for
vitdense.ConvNeXt) with the same architecture, on the same input, timed in alternation with vitdense's, and
prints the ratios (of the medians and of the minima: noise only ever adds time). Without --backbone-only each
reference backbone is swapped into a copy of the full model.

``--test`` times whole-model inference the same way (``model.test_step``: preprocessing, forward and
post-processing, what ``tools/test.py`` runs per batch less data loading and the metric) on the config's first
``--batches`` test batches, with ``--compare`` next to the same reference config, both in eval mode with the same
weights.

``--backbone-only --train`` times the backbone's training step instead: forward and backward (a loss on all
output maps), the model in training mode with stochastic depth off on every side, so all do the same work.

``--train`` times whole training iterations instead (``model.train_step``: preprocessing, forward, backward,
optimiser step) on the config's own first ``--batches`` training batches, and with ``--compare`` next to the
OpenMMLab config that trains the same model (vitdense.analysis.iteration.REFERENCE_CONFIGS, or
``--reference-config``: mmdet's own Swin-T Mask R-CNN for the Swin-T mini config), pointed at the same data, lr
and seed and started from the same weights; iterations interleaved, ratios of the minima and of the medians
(wall and process CPU time). Example, a few minutes on 2 cores:

    python tools/benchmark.py configs/swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py --train --compare

``--amp bf16``: with ``--train`` / ``--test``, vitdense's side trains / infers as ``tools/train.py`` / ``tools/test.py
--amp bf16`` run it (the network under bfloat16 autocast, box arithmetic in float32; a config can also say so
itself), the reference config as it is (mmengine's AmpOptimWrapper cannot be built without a GPU). With
``--backbone-only`` every implementation runs under bfloat16 autocast, and each reference also in float32.
"""
import argparse
import copy
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vitdense.errors import UserError  # noqa: E402
from vitdense.runtime.config import DictAction, load_config  # noqa: E402
from vitdense.runtime.errors import run_tool  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file, e.g. configs/swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py')
    parser.add_argument('--backbone-only', action='store_true',
                        help='benchmark model.backbone alone (its forward on the image batch)')
    parser.add_argument('--shape', type=int, nargs='+', default=[512, 512], metavar='N',
                        help='input size H W, or one number for a square input (default: 512 512)')
    parser.add_argument('--batch-size', type=int, default=1, help='images per forward (default: 1)')
    parser.add_argument('--device', default=None,
                        help="'cpu', 'cuda' or 'cuda:N' (default: cuda when available, else cpu)")
    parser.add_argument('--warmup', type=int, default=2, help='untimed forwards before measuring (default: 2)')
    parser.add_argument('--repeats', type=int, default=5,
                        help='timed forwards; throughput uses their median (default: 5)')
    parser.add_argument('--compare', action='store_true',
                        help="also run the backbone's reference implementation and print the ratios")
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. model.backbone.arch=small')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar on stderr')
    parser.add_argument('--train', action='store_true',
                        help='time whole training iterations on the config\'s own batches; with --backbone-only, the '
                             'backbone\'s forward + backward (see above)')
    parser.add_argument('--test', action='store_true',
                        help="time whole-model inference (test_step) on the config's own test batches (see above)")
    parser.add_argument('--batches', type=int, default=2,
                        help='--train / --test: batches, each timed --repeats times (default: 2)')
    parser.add_argument('--amp', choices=('bf16',), default=None,
                        help='bfloat16 autocast (see above): --train / --test: vitdense\'s side as tools/train.py / '
                             'tools/test.py --amp bf16 run it; --backbone-only: every implementation, the references '
                             'also in float32')
    parser.add_argument('--reference-config',
                        help="--train --compare: the reference config (default: the one vitdense.analysis.iteration "
                             "names for CONFIG), e.g. mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py")
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def make_runner(model, inputs, samples, backbone_only, train=False, dtype=None):
    """One timed call; under ``autocast_network(model, dtype)`` when a dtype is given (a bare backbone: all of it)."""
    import contextlib

    from vitdense.engine.mixed_precision import autocast_network
    precision = (lambda: autocast_network(model, dtype)) if dtype is not None else contextlib.nullcontext

    def run():
        with precision():
            if train:
                loss = sum(out.float().square().mean() for out in model(inputs))
            elif backbone_only:
                return model(inputs)
            else:
                return model(inputs, samples, mode='predict')
        loss.backward()
        model.zero_grad(set_to_none=True)
    return run


def whole_model_main(args):
    """--train / --test: whole training iterations or test steps, optionally next to the reference config's."""
    import statistics

    from vitdense.analysis import iteration as benchmarking
    from vitdense.analysis import published, speed
    if args.batches < 1 or args.repeats < 1 or args.warmup < 0:
        raise UserError('--batches and --repeats must be positive and --warmup >= 0')
    speed.set_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    if args.amp:
        from vitdense.runtime.launch import set_mixed_precision, set_test_precision
        if args.test:
            set_test_precision(cfg, args.amp)
        else:
            set_mixed_precision(cfg, args.amp)
    split = 'test' if args.test else 'train'
    if args.test and 'test_dataloader' not in cfg:
        raise UserError(f'{args.config} has no test_dataloader: --test needs a config with one')
    if not args.test and ('train_dataloader' not in cfg or 'optim_wrapper' not in cfg):
        raise UserError(f'{args.config} has no train_dataloader / optim_wrapper: --train needs a training config')
    seed = cfg.get('randomness', {}).get('seed', 0)
    configs = {'vitdense': cfg}
    if args.compare:
        reference = args.reference_config or benchmarking.REFERENCE_CONFIGS.get(published.config_name(args.config))
        if reference is None:
            raise UserError(f'no reference config known for {args.config}; name one with --reference-config '
                            f'(known: {", ".join(benchmarking.REFERENCE_CONFIGS)})')
        configs = {reference: benchmarking.reference_config(cfg, reference), 'vitdense': cfg}
    trainers = {}
    for label, c in configs.items():
        benchmarking.seed_everything(seed)
        trainers[label] = benchmarking.build_trainer(c)
    if args.compare:  # same starting weights: same proposals, same RoIs, the same work per iteration
        reference_model = trainers[next(iter(configs))][0]
        benchmarking.copy_weights(reference_model, trainers['vitdense'][0])
    benchmarking.seed_everything(seed)
    batches = benchmarking.first_batches(cfg, args.batches, split)
    shapes = '; '.join(', '.join('x'.join(map(str, img.shape)) for img in b['inputs']) for b in batches)
    import torch
    what = 'inference (test_step)' if args.test else 'training iterations (train_step)'
    precisions = {label: benchmarking.test_precision(c) if args.test else benchmarking.train_precision(c)
                  for label, c in configs.items()}
    what += ', ' + ', '.join(f'{label} in {str(dtype or torch.float32)[6:]}' for label, dtype in precisions.items())
    print(f'{args.config}: {what} on {args.batches} batch(es) [{shapes}], '
          f'{torch.get_num_threads()} CPU threads, warm-up {args.warmup} round(s), {args.repeats} timed '
          'round(s), interleaved')
    if args.test:
        for model, _ in trainers.values():
            model.eval()
        times = benchmarking.time_test_steps({k: m for k, (m, _) in trainers.items()}, batches, args.repeats,
                                             warmup=args.warmup, dtypes=precisions)
    else:
        times = benchmarking.time_train_steps(trainers, batches, args.repeats, warmup=args.warmup)
    width = max(len(label) for label in times) + 2
    losses = '' if args.test else 'losses'
    print(f'\n{"config":<{width}} {"min s":>8} {"median s":>9} {"CPU min s":>10} {"CPU median s":>13}  {losses}')
    for label, t in times.items():
        print(f'{label:<{width}} {min(t.wall):>8.2f} {statistics.median(t.wall):>9.2f} {min(t.cpu):>10.2f} '
              f'{statistics.median(t.cpu):>13.2f}  {" ".join(f"{v:.4f}" for v in t.losses)}')
    if args.compare:
        ref, ours = times.values()
        print(f'speed-up of vitdense over the reference (reference time / vitdense time): '
              f'minima {min(ref.wall) / min(ours.wall):.2f}x, medians '
              f'{statistics.median(ref.wall) / statistics.median(ours.wall):.2f}x, CPU time minima '
              f'{min(ref.cpu) / min(ours.cpu):.2f}x')
    return times


def main(argv=None):
    args = parse_args(argv)
    if args.train and args.test:
        raise UserError('--train and --test time different things: pass one of them')
    if args.test and args.backbone_only:
        raise UserError('--test times the whole model; for the backbone alone drop --test')
    if (args.train and not args.backbone_only) or args.test:
        return whole_model_main(args)
    import torch
    from vitdense.analysis import flops, parse_size, references, speed
    from vitdense.runtime.config import build_model
    shape = parse_size(args.shape)
    if min(shape) < 1 or args.batch_size < 1 or args.repeats < 1 or args.warmup < 0:
        raise UserError('--shape, --batch-size and --repeats must be positive and --warmup >= 0')
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise UserError(f'--device {device} asked for, but torch sees no CUDA device; use --device cpu')
    speed.set_threads(args.threads)
    cfg = load_config(args.config, args.cfg_options)
    if args.train and 'drop_path_rate' in cfg.get('model', {}).get('backbone', {}):
        cfg.model.backbone.drop_path_rate = 0.0  # the references are built without stochastic depth
    if not flops.is_model_config(cfg):
        raise UserError(f'{args.config} defines no complete model (a _base_ fragment?); pass a leaf config')

    model = build_model(cfg, backbone_only=args.backbone_only)
    backbone = model if args.backbone_only else model.backbone
    if not args.backbone_only:
        shape = flops.model_input_shape(model, shape)
    torch.manual_seed(0)
    inputs = torch.randn(args.batch_size, 3, *shape, device=device)
    samples = None if args.backbone_only else flops.synthetic_samples(cfg.default_scope, args.batch_size, shape)
    name = backbone.__class__.__name__
    prefix = '' if args.backbone_only else f'{type(model).__name__} + '
    dtype = torch.bfloat16 if args.amp == 'bf16' else None
    suffix = ' (bf16)' if dtype else ''
    models = {f'{prefix}vitdense {name}{suffix}': (model, dtype)}
    if args.compare:  # ConfigError (one line) if there is no reference
        for description, reference in references.reference_backbones(backbone, shape):
            if not args.backbone_only:  # the reference backbone inside a copy of the full model
                full = copy.deepcopy(model)
                full.backbone = reference
                reference, description = full, prefix + description
            models[description + suffix] = (reference, dtype)
            if dtype:  # the reference as a user runs it by default, too
                models[description + ' (fp32)'] = (reference, None)
    runners = {}
    for label, (m, precision) in models.items():
        m.to(device).train(args.train)
        runners[label] = make_runner(m, inputs, samples, args.backbone_only, train=args.train, dtype=precision)
    what = 'backbone training step (forward + backward)' if args.train else \
        'backbone' if args.backbone_only else 'model (predict)'
    print(f'{args.config}: {what}, input {args.batch_size}x3x{shape[0]}x{shape[1]}, device {device}, '
          f'{torch.get_num_threads()} CPU threads, warm-up {args.warmup}, median of {args.repeats}')
    results = speed.benchmark(runners, args.batch_size, device, warmup=args.warmup, repeats=args.repeats,
                              progress=not args.no_progress, grad=args.train)
    method = next(iter(results.values())).mem_method
    width = max(len(label) for label in results) + 2
    print(f'\n{"implementation":<{width}} {"images/s":>10} {"median ms":>10} {"min-max ms":>17} {"peak MB":>9}')
    for label, r in results.items():
        spread = f'{min(r.times) * 1e3:.1f}-{max(r.times) * 1e3:.1f}'
        print(f'{label:<{width}} {r.images_per_s:>10.3f} {r.median_s * 1e3:>10.1f} {spread:>17} '
              f'{r.peak_mem / 2**20:>9.1f}')
    print(f'(peak MB: {method} added by one forward)')
    if args.compare:
        ours, *refs = results.values()
        for ref in refs:
            print(f'vitdense / {ref.name}: throughput {ours.images_per_s / ref.images_per_s:.2f}x '
                  f'(minima {min(ref.times) / min(ours.times):.2f}x), peak memory '
                  f'{ours.peak_mem / max(ref.peak_mem, 1):.2f}x')
    return results


if __name__ == '__main__':
    run_tool(main)
