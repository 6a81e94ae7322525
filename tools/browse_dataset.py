"""Draw a config's ground truth on its images, as the model receives them (after the data pipeline).

    python tools/browse_dataset.py CONFIG [--phase train|val|test] [--output-dir DIR] [--max-images N]

Detection configs: boxes, instance masks and class names; segmentation configs: the colour-coded label map
over the image (ignored pixels left as they are). ``--phase train`` shows the training augmentation (random
flips, crops, scales: run it twice to see different draws); ``val`` / ``test`` the evaluation pipeline. The
drawing uses the config's own mmdet / mmseg visualizer and the dataset's class names and palette.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vitdense.errors import UserError  # noqa: E402
from vitdense.runtime.config import DictAction, load_config  # noqa: E402
from vitdense.runtime.data_checks import check_data, leaf_datasets  # noqa: E402
from vitdense.runtime.errors import run_tool  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file, e.g. configs/swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py')
    parser.add_argument('--phase', choices=['train', 'val', 'test'], default='train',
                        help="which dataloader's dataset and pipeline to draw (default: train)")
    parser.add_argument('--output-dir', default='browse_dataset',
                        help='where the pictures go, one per sample, named after the image (default: browse_dataset)')
    parser.add_argument('--max-images', type=int, default=None,
                        help='draw at most this many samples (default: the whole dataset)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. train_dataloader.dataset.pipeline.2.prob=1.0')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar on stderr')
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def build_visualizer(cfg, metainfo):
    """The config's visualizer (drawing only: no storage backends), with the dataset's classes / palette."""
    from mmengine.registry import VISUALIZERS
    vis_cfg = dict(cfg.visualizer)
    vis_cfg.pop('vis_backends', None)
    vis_cfg['name'] = f'browse_dataset_{time.time_ns()}'  # visualizers are named singletons
    visualizer = VISUALIZERS.build(vis_cfg)
    if hasattr(visualizer, 'set_dataset_meta'):  # mmseg
        visualizer.set_dataset_meta(classes=metainfo.get('classes'), palette=metainfo.get('palette'))
    else:  # mmdet
        visualizer.dataset_meta = dict(metainfo)
    return visualizer


def annotations_after_resize(pipeline) -> bool:
    """True when a pipeline loads annotations after resizing the image, as evaluation pipelines do: its boxes,
    masks and label maps stay at the original image size."""
    types = [str(step.get('type', '')).split('.')[-1] for step in pipeline]
    load = next((i for i, t in enumerate(types) if t == 'LoadAnnotations'), None)
    resize = next((i for i, t in enumerate(types) if 'Resize' in t), None)
    return load is not None and resize is not None and load > resize


def drawable(sample, image_shape, original_size_annotations: bool = False):
    """Ground truth in the types and size the visualizers draw: detection boxes as tensors and masks as
    boolean arrays. Annotations loaded after the Resize (``original_size_annotations``: evaluation pipelines
    keep them at full size) are brought to the image: boxes scaled by the Resize's scale factor, masks and
    label maps resized (nearest)."""
    import torch
    import torch.nn.functional as F

    def to_image(maps):  # (N, h, w) -> (N, H, W) of the image, nearest
        if tuple(maps.shape[-2:]) == tuple(image_shape):
            return maps
        return F.interpolate(maps[None].float(), size=tuple(image_shape), mode='nearest')[0].to(maps.dtype)
    seg = sample.get('gt_sem_seg')
    if seg is not None:
        from mmengine.structures import PixelData
        sample.gt_sem_seg = PixelData(data=to_image(seg.data))
    gt = sample.get('gt_instances')
    if gt is None:
        return sample
    boxes = gt.get('bboxes')
    if boxes is not None and hasattr(boxes, 'tensor'):  # mmdet BaseBoxes
        gt.bboxes = boxes = boxes.tensor
    masks = gt.get('masks')
    if masks is not None and hasattr(masks, 'to_ndarray'):  # BitmapMasks / PolygonMasks
        gt.masks = to_image(torch.from_numpy(masks.to_ndarray().astype(bool))).numpy()
    scale = sample.metainfo.get('scale_factor')
    if original_size_annotations and boxes is not None and scale is not None:
        gt.bboxes = boxes * boxes.new_tensor([scale[0], scale[1], scale[0], scale[1]])
    return sample


def main(argv=None):
    args = parse_args(argv)
    if args.max_images is not None and args.max_images < 1:
        raise UserError(f'--max-images must be positive, got {args.max_images}')
    cfg = load_config(args.config, args.cfg_options)
    if cfg.default_scope not in ('mmdet', 'mmseg'):
        raise UserError(f"{args.config} is a '{cfg.default_scope}' config; browse_dataset draws detection "
                        '(mmdet) and segmentation (mmseg) ground truth')
    loader = f'{args.phase}_dataloader'
    if not cfg.get(loader):
        raise UserError(f'{args.config} has no {loader}; choose another --phase')
    check_data(cfg, loaders=(loader,))
    import numpy as np
    from mmengine.registry import DATASETS, init_default_scope
    from tqdm import tqdm
    init_default_scope(cfg.default_scope)
    dataset = DATASETS.build(cfg[loader].dataset)
    original_size = any(annotations_after_resize(ds.get('pipeline') or []) for name, ds in leaf_datasets(cfg)
                        if name == loader)
    visualizer = build_visualizer(cfg, dataset.metainfo)
    os.makedirs(args.output_dir, exist_ok=True)
    count = len(dataset) if args.max_images is None else min(args.max_images, len(dataset))
    written, used = [], set()
    for index in tqdm(range(count), desc='browse', disable=args.no_progress, dynamic_ncols=True):
        item = dataset[index]
        image = np.ascontiguousarray(item['inputs'].permute(1, 2, 0).numpy()[..., ::-1])  # BGR -> RGB
        sample = drawable(item['data_samples'], image.shape[:2], original_size)
        name = os.path.basename(sample.metainfo.get('img_path', f'{index:06d}.png'))
        if name in used:  # the same image twice (concatenated or repeated datasets)
            name = f'{index:06d}_{name}'
        used.add(name)
        out_file = os.path.join(args.output_dir, name)
        visualizer.add_datasample(name, image, sample, draw_gt=True, draw_pred=False, show=False,
                                  out_file=out_file)
        written.append(out_file)
    print(f'wrote {len(written)} image(s) to {args.output_dir}')
    return written


if __name__ == '__main__':
    run_tool(main)
