"""Write the model-zoo table: params and FLOPs of every config in configs/, next to the published figures.

    python tools/model_zoo.py [--out docs/model_zoo.md] [--params-only] [--pattern swin] [--include-mini]

Each leaf config's model is built (random weights, no checkpoint needed) and counted with
vitdense.analysis.flops.complexity at the size the papers report: 1280x800 for COCO detection, 512x2048 for
ADE20K segmentation. FLOPs are multiply-adds (the papers' / fvcore's / mmcv's convention), counted on the
meta device (a few seconds per config). The published figures live in vitdense.analysis.published.PUBLISHED.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vitdense.errors import UserError  # noqa: E402
from vitdense.runtime.config import load_config  # noqa: E402
from vitdense.runtime.errors import run_tool  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--configs', default=os.path.join(REPO, 'configs'),
                        help='folder searched recursively for leaf configs (_base_ folders skipped); '
                             'default: the repository configs/')
    parser.add_argument('--pattern', nargs='+',
                        help='only configs whose path contains one of these texts, e.g. --pattern swin/ convnext/')
    parser.add_argument('--include-mini', action='store_true',
                        help='also list the *_mini-* configs (CPU smoke-test models; skipped by default)')
    parser.add_argument('--params-only', action='store_true',
                        help='count parameters only (no FLOPs): faster, and the FLOPs columns are left out')
    parser.add_argument('--out', help='write the markdown table to this file (default: print it to stdout)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar on stderr')
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def describe(cfg):
    """(task, model, backbone) labels: e.g. ('det', 'MaskRCNN', 'SwinTransformer tiny')."""
    model = cfg.model
    task = {'mmdet': 'det', 'mmseg': 'seg', 'mmpretrain': 'cls'}.get(cfg.default_scope, cfg.default_scope)
    head = model.get('decode_head', {}).get('type') if task == 'seg' else model.type
    backbone = model.backbone.type.split('.')[-1]
    arch = model.backbone.get('arch')
    if isinstance(arch, str):
        backbone += f'-{arch}'
    return task, head, backbone


def table_rows(paths, params_only=False, progress=True):
    """One dict per config: name, task, model, backbone, shape, params_m, gflops, published, seconds."""
    from vitdense.analysis import flops, published, speed
    rows = []
    bar = speed.progress_bar(total=len(paths), desc='model zoo', enabled=progress)
    for path in paths:
        bar.set_postfix_str(os.path.basename(path)[:40])
        try:
            cfg = load_config(path)
        except UserError:
            cfg = None
        if cfg is None or not flops.is_model_config(cfg):
            bar.update()
            continue
        task, head, backbone = describe(cfg)
        try:
            result = flops.complexity(cfg, flops=not params_only)
        except Exception as err:  # one broken config must not cost the whole table: list it, go on
            rows.append(dict(name=published.config_name(path), path=os.path.abspath(path), task=task,
                             model=head, backbone=backbone, error=f'{type(err).__name__}: '
                             f'{(str(err).splitlines() or [""])[0][:200]}'))
            bar.update()
            continue
        rows.append(dict(name=published.config_name(path), path=os.path.abspath(path), task=task,
                         model=head, backbone=backbone, shape=result.shape, params_m=result.params / 1e6,
                         gflops=None if params_only else result.flops / 1e9,
                         published=published.published_for(path), seconds=result.seconds, note=result.note))
        bar.update()
    bar.close()
    return rows


def markdown(rows, params_only=False, link_from=REPO):
    """The table; config links are relative to the folder ``link_from`` (where the file will live)."""
    from vitdense.analysis.published import percent_diff
    head = ['Config', 'Task', 'Head', 'Backbone', 'Input (HxW)', 'Params (M)', 'Published (M)', 'Δ params']
    if not params_only:
        head += ['FLOPs (G)', 'Published (G)', 'Δ FLOPs']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]

    def link(row):
        return os.path.relpath(row['path'], link_from).replace(os.sep, '/')

    for r in rows:
        if 'error' in r:
            lines.append('| ' + ' | '.join([f"[{r['name']}]({link(r)})", r['task'], r['model'], r['backbone']]
                                           + ['failed'] + [''] * (len(head) - 5)) + ' |')
            continue
        pub = r['published']
        cells = [f"[{r['name']}]({link(r)})", r['task'], r['model'], r['backbone'],
                 f"{r['shape'][0]}x{r['shape'][1]}", f"{r['params_m']:.1f}",
                 f'{pub.params_m:g}' if pub else '', percent_diff(r['params_m'], pub.params_m if pub else None)]
        if not params_only:
            pub_g = pub.gflops if pub else None
            gflops = f"{r['gflops']:.0f}" if r['gflops'] >= 100 else f"{r['gflops']:.1f}"
            cells += [gflops, f'{pub_g:g}' if pub_g else '', percent_diff(r['gflops'], pub_g)]
        lines.append('| ' + ' | '.join(cells) + ' |')
    notes = ['', 'Params: all parameters of the inference model (auxiliary heads included). '
             + ('' if params_only else 'FLOPs: multiply-adds (the convention of the papers, fvcore and mmcv) '
                'for one image, detection at 1280x800 (backbone, FPN, RPN, RoI heads on 1000 proposals), '
                'segmentation at 512x2048 (backbone and decode head, whole image), classification at 224x224; '
                'counted with vitdense.analysis (tools/get_flops.py). ')
             + 'Published: the papers\' / official repositories\' figures (vitdense.analysis.published).']
    notes += [f"- {r['name']}: {r['note']}" for r in rows if r.get('note')]
    notes += [f"- {r['name']}: failed: {r['error']}" for r in rows if r.get('error')]
    return '\n'.join(lines + notes) + '\n'


def main(argv=None):
    args = parse_args(argv)
    if not os.path.isdir(args.configs):
        raise UserError(f'--configs {args.configs} is not a folder')
    from vitdense.analysis.published import iter_configs
    paths = iter_configs(args.configs, include_mini=args.include_mini, patterns=args.pattern)
    if not paths:
        raise UserError(f'no configs under {args.configs}' + (f' matching {args.pattern}' if args.pattern else ''))
    start = time.perf_counter()
    rows = table_rows(paths, params_only=args.params_only, progress=not args.no_progress)
    link_from = os.path.dirname(os.path.abspath(args.out)) if args.out else os.getcwd()
    text = markdown(rows, params_only=args.params_only, link_from=link_from)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            f.write(text)
        print(f'wrote {len(rows)} rows to {args.out} in {time.perf_counter() - start:.0f} s', file=sys.stderr)
    else:
        sys.stdout.write(text)
    return rows


if __name__ == '__main__':
    run_tool(main)
