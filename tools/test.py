"""Evaluate a checkpoint: COCO bbox / segm AP (pycocotools) for detection configs, mIoU for segmentation,
top-1 accuracy for classification.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR] [--amp bf16] [--cfg-options k=v ...]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vitdense.runtime.config import DictAction, load_config  # noqa: E402
from vitdense.runtime.data_checks import check_data  # noqa: E402
from vitdense.runtime.errors import run_tool  # noqa: E402
from vitdense.runtime.launch import (add_launcher_args, build_runner, parse_launcher_args,  # noqa: E402
                                     set_test_precision, setup_cpu_distributed, unwrapped_model)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file the checkpoint was trained with')
    parser.add_argument('checkpoint', help='checkpoint (.pth) written by tools/train.py')
    parser.add_argument('--work-dir', help='where the evaluation log and metrics go')
    parser.add_argument('--show-dir', help='write images with predictions drawn into this folder (under work dir)')
    parser.add_argument('--amp', choices=('bf16',), default=None,
                        help='run the network in bfloat16 (vitdense.BF16TestLoop: backbone, neck and heads under '
                             'autocast, box decoding / NMS / mask pasting in float32; CPU and GPU)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
    add_launcher_args(parser)
    return parse_launcher_args(parser)


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    from vitdense.engine.device import check_mmcv_ops_for_device
    check_mmcv_ops_for_device()  # a model on CUDA needs mmcv's CUDA kernels
    cfg.launcher = args.launcher
    if args.amp:
        set_test_precision(cfg, args.amp)
    check_data(cfg, loaders=('test_dataloader',))
    from vitdense.checkpoint import load_checkpoint_file
    from vitdense.checkpoint.io import check_fits, install_safe_loading
    install_safe_loading()  # also for a config that does not list vitdense.engine in custom_imports
    checkpoint = load_checkpoint_file(args.checkpoint)  # weights_only; fails in one line before the runner is built
    cfg.load_from = args.checkpoint
    if args.show_dir:  # each toolbox's visualization hook names its switches differently
        vis = cfg.default_hooks.visualization
        if cfg.default_scope == 'mmpretrain':
            vis.update(enable=True, interval=1, out_dir=os.path.join(cfg.work_dir, args.show_dir))
        else:  # mmdet / mmseg write under work_dir/<timestamp>/
            vis.update(draw=True, test_out_dir=args.show_dir)
            if cfg.default_scope == 'mmseg':
                vis.interval = 1
    setup_cpu_distributed(cfg)

    runner = build_runner(cfg)
    # mmengine would only log missing / mismatched weights and evaluate a partly random model
    check_fits(unwrapped_model(runner), checkpoint, args.checkpoint)
    del checkpoint
    metrics = runner.test()
    print('metrics: ' + ', '.join(f'{k}={v:.4f}' if isinstance(v, float) else f'{k}={v}'
                                  for k, v in metrics.items()))


if __name__ == '__main__':
    run_tool(main)
