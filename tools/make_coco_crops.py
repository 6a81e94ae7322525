"""Cut an ImageNet-format classification folder out of COCO instance boxes (vitdense.transfer).

    python tools/make_coco_crops.py [--ann-file A] [--img-root R] [--out-dir D] [--size 112] [--min-per-class 2]

Defaults turn the bundled real mini COCO (data/mini/coco_val2017_mini) into data/mini/coco_crops_mini:
{train,val}/<category>/<image id>_<annotation id>.jpg plus crops.json (each crop's source box). Deterministic:
running it again writes the same files. Used by the *_mini-coco-crops.py classification configs and by
tools/transfer_eval.py.
"""
import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vitdense.runtime.errors import run_tool  # noqa: E402
from vitdense.transfer import make_coco_crops_dataset  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINI = os.path.join(REPO, 'data', 'mini', 'coco_val2017_mini')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--ann-file', default=os.path.join(MINI, 'instances_mini.json'),
                        help='COCO instances json (default: the bundled mini COCO)')
    parser.add_argument('--img-root', default=MINI, help="folder the json's file_name entries are relative to")
    parser.add_argument('--out-dir', default=os.path.join(REPO, 'data', 'mini', 'coco_crops_mini'),
                        help='output folder; replaced if it exists (default: data/mini/coco_crops_mini)')
    parser.add_argument('--size', type=int, default=112, help='side of the square crops in pixels (default 112)')
    parser.add_argument('--context', type=float, default=0.15,
                        help="margin around each box, as a fraction of its longer side (default 0.15)")
    parser.add_argument('--min-box', type=int, default=12, help='skip boxes with a shorter side below this (px)')
    parser.add_argument('--min-per-class', type=int, default=2, help='drop classes with fewer crops (default 2)')
    parser.add_argument('--val-every', type=int, default=3, help='every n-th crop of a class goes to val')
    args = parser.parse_args(argv)
    if os.path.isdir(args.out_dir):
        shutil.rmtree(args.out_dir)
    summary = make_coco_crops_dataset(args.ann_file, args.img_root, args.out_dir, size=args.size,
                                      context=args.context, min_box=args.min_box,
                                      min_per_class=args.min_per_class, val_every=args.val_every)
    counts = ', '.join(f"{c} {n['train']}/{n['val']}" for c, n in summary['classes'].items())
    print(f"wrote {len(summary['crops'])} crops of {len(summary['classes'])} classes to {args.out_dir} "
          f"(train/val: {counts}); dropped classes with fewer than {args.min_per_class} crops: "
          f"{', '.join(summary['dropped_classes']) or 'none'}")


if __name__ == '__main__':
    run_tool(main)
