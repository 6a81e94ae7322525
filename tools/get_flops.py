"""Parameters and FLOPs of a config's model, or of its backbone alone, at a given input size.

    python tools/get_flops.py CONFIG [--shape H [W]] [--backbone-only] [--depth N] [--cfg-options k=v ...]

FLOPs are multiply-adds (the convention of the Swin / ConvNeXt papers, fvcore and mmcv: Swin-T at 224 is
"4.5 GFLOPs"), counted for every op the forward runs: convolutions, linears, attention matmuls (SDPA,
torch.matmul / bmm / einsum), LSTM gates, cdist and sort comparisons. Models run on the meta device, so even
512x2048 UperNets take seconds. Detectors run backbone + neck + RPN + RoI heads on 1000 fixed proposals
(mmdet's tensor-mode forward); segmentors backbone + decode head on the whole image. See vitdense/analysis/flops.py.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vitdense.errors import UserError  # noqa: E402
from vitdense.runtime.config import DictAction, load_config  # noqa: E402
from vitdense.runtime.errors import run_tool  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file, e.g. configs/swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py')
    parser.add_argument('--shape', type=int, nargs='+', metavar='N',
                        help='input size: H W, or one number for a square input (default: the size the papers '
                             'report: 800 1280 for detection, 512 2048 for segmentation); detection inputs '
                             'are padded to a multiple of 32 as the data preprocessor does')
    parser.add_argument('--backbone-only', action='store_true',
                        help='count the backbone alone (model.backbone of the config) instead of the full model')
    parser.add_argument('--depth', type=int, default=2,
                        help='show the per-module breakdown down to this nesting depth (0: totals only)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. model.backbone.arch=small')
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from vitdense.analysis import parse_size
    from vitdense.analysis.flops import STANDARD_SHAPES, complexity, is_model_config
    from vitdense.analysis.published import published_for
    shape = parse_size(args.shape)
    cfg = load_config(args.config, args.cfg_options)
    if not is_model_config(cfg):
        raise UserError(f'{args.config} defines no complete model (a _base_ fragment?); pass a leaf config')
    if shape and min(shape) < 1:
        raise UserError(f'--shape must be positive, got {shape}')
    result = complexity(cfg, shape, backbone_only=args.backbone_only, depth=args.depth)
    what = 'backbone' if args.backbone_only else 'model'
    rows = [
        ('config', args.config),
        (what, cfg.model.backbone.type if args.backbone_only else cfg.model.type),
        ('input', f'1 x 3 x {result.shape[0]} x {result.shape[1]}'),
        ('params', f'{result.params / 1e6:.2f} M'),
        ('FLOPs', f'{result.flops / 1e9:.2f} G  (multiply-adds, as the papers / fvcore / mmcv count them)'),
    ]
    published = published_for(args.config)
    if published and not args.backbone_only and not args.cfg_options and \
            result.shape == STANDARD_SHAPES.get(cfg.default_scope):
        rows.append(('published', f'{published.params_m} M params'
                     + (f', {published.gflops} GFLOPs' if published.gflops else '') + f' ({published.source})'))
    if result.note:
        rows.append(('note', result.note))
    rows.append(('by op', ', '.join(f'{op} {n / 1e9:.2f} G' for op, n in
                                    sorted(result.by_op.items(), key=lambda kv: -kv[1]))))
    lines = [f'{label + ":":<11}{value}' for label, value in rows]
    print('\n'.join(lines))
    if args.depth > 0:
        print(f'\n{"module":<60} {"GFLOPs":>10} {"share":>7}')
        for name, n in result.by_module:
            indent = '  ' * name.count('.')
            print(f'{indent + name:<60} {n / 1e9:>10.2f} {100.0 * n / max(result.flops, 1):>6.1f}%')
    return result


if __name__ == '__main__':
    run_tool(main)
