"""Run a trained model on an image or a folder of images and write the pictures with its predictions drawn:
boxes, masks and class names for detection configs, the colour-coded segmentation overlay for segmentation.

    python tools/demo.py CONFIG CHECKPOINT INPUT [--out-dir DIR] [--score-thr T] [--opacity A] [--device D]

INPUT is an image file or a folder (searched recursively for .jpg/.jpeg/.png/.bmp/.tif/.tiff/.webp). Each
output keeps the input's file name (and its path relative to the folder). Inference goes through mmdet's
DetInferencer / mmseg's MMSegInferencer and their visualizers (vitdense.inference.build_inferencer).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vitdense.errors import UserError  # noqa: E402
from vitdense.runtime.config import DictAction  # noqa: E402
from vitdense.runtime.errors import run_tool  # noqa: E402

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='checkpoint (.pth) written by tools/train.py, or any state dict of '
                                           'the model (class names then come from the config)')
    parser.add_argument('input', help='an image file, or a folder of images')
    parser.add_argument('--out-dir', default='demo_out', help='where the pictures go (default: demo_out)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection: draw boxes with a score >= this (default 0.3); a value below the '
                             "model's own test_cfg score_thr (0.05) lowers that one too, e.g. 0.01 to see "
                             'what a barely trained model predicts')
    parser.add_argument('--opacity', type=float, default=0.5,
                        help='segmentation: opacity of the colour overlay, 0..1 (default 0.5)')
    parser.add_argument('--device', default=None, help="'cpu', 'cuda' or 'cuda:N' (default: cuda if available)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar on stderr')
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def list_images(path: str):
    """[(file, name relative to the input)] for an image or a folder of images."""
    if os.path.isfile(path):
        return [(path, os.path.basename(path))]
    if not os.path.isdir(path):
        raise UserError(f'input not found: {path} (pass an image file or a folder of images)')
    found = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                full = os.path.join(root, name)
                found.append((full, os.path.relpath(full, path)))
    if not found:
        raise UserError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in {path}')
    return found


def main(argv=None):
    args = parse_args(argv)
    if not 0.0 <= args.opacity <= 1.0:
        raise UserError(f'--opacity must lie in 0..1, got {args.opacity}')
    images = list_images(args.input)
    from mmcv import imwrite
    from tqdm import tqdm

    from vitdense.inference import build_inferencer
    inferencer = build_inferencer(args.config, args.checkpoint, device=args.device, cfg_options=args.cfg_options,
                                  score_thr=args.score_thr)
    is_det = type(inferencer).__name__ == 'DetInferencer'
    extra = dict(pred_score_thr=args.score_thr, no_save_vis=True) if is_det else dict(opacity=args.opacity)
    written = []
    for path, name in tqdm(images, desc='demo', disable=args.no_progress, dynamic_ncols=True):
        result = inferencer(path, return_vis=True, **extra)
        picture = result['visualization']
        picture = picture[0] if isinstance(picture, list) else picture  # mmseg unwraps single results
        out_file = os.path.join(args.out_dir, name)
        imwrite(picture[..., ::-1], out_file)  # visualizers draw RGB; imwrite wants BGR
        prediction = result['predictions']
        written.append((out_file, prediction[0] if isinstance(prediction, list) else prediction))
    print(f'wrote {len(written)} image(s) to {args.out_dir}')
    return written  # [(picture file, predictions)] for scripts and tests


if __name__ == '__main__':
    run_tool(main)
