"""Train a vitdense detection or segmentation config (mmdet / mmseg runner).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp [fp16|bf16]] [--cfg-options k=v ...]
    bash tools/dist_train.sh CONFIG NUM_PROCS [args]      # torchrun, one process per GPU (or CPU, gloo)

A config that sets ``runner_type='FlexibleRunner'`` and a ``strategy`` (DDPStrategy, FSDPStrategy, DeepSpeedStrategy)
gets mmengine's FlexibleRunner, as with mmdet's and mmseg's train.py; any other config gets mmengine's Runner.

``--resume`` without a path continues from the work dir's latest complete checkpoint (or starts fresh when there
is none), so the same command line can be re-run after a crash or a preemption.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from vitdense.errors import UserError  # noqa: E402
from vitdense.runtime.config import DictAction, load_config  # noqa: E402
from vitdense.runtime.data_checks import check_data, check_work_dir  # noqa: E402
from vitdense.runtime.errors import run_tool  # noqa: E402
from vitdense.runtime.launch import (add_launcher_args, build_runner, check_sharding_strategy,  # noqa: E402
                                     parse_launcher_args, set_mixed_precision, setup_cpu_distributed,
                                     unwrapped_model)
from vitdense.runtime.resume import find_resume_checkpoint  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file, e.g. configs/swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py')
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default: work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                        help='resume from CKPT, or from the latest checkpoint in the work dir when no path is given')
    parser.add_argument('--amp', nargs='?', const='fp16', choices=('fp16', 'bf16'), default=None,
                        help='mixed precision: fp16 (mmengine AmpOptimWrapper, dynamic loss scaling, GPU only; what '
                             'a bare --amp means, as in mmdet) or bf16 (vitdense BF16AutocastOptimWrapper, no loss '
                             'scaling, GPU or CPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr linearly with the total batch size (auto_scale_lr.base_batch_size)')
    parser.add_argument('--sync-bn', action='store_true', help='convert BatchNorm to SyncBatchNorm (multi-GPU)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. train_cfg.max_iters=10 model.backbone.with_cp=True')
    add_launcher_args(parser)
    return parse_launcher_args(parser)


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    from vitdense.engine.device import check_mmcv_ops_for_device
    check_mmcv_ops_for_device()  # a model on CUDA needs mmcv's CUDA kernels
    cfg.launcher = args.launcher
    check_data(cfg, loaders=('train_dataloader', 'val_dataloader'))
    check_work_dir(cfg.work_dir)
    if args.amp:
        set_mixed_precision(cfg, args.amp)
    if args.auto_scale_lr:
        cfg.auto_scale_lr = dict(cfg.get('auto_scale_lr') or {}, enable=True)
    if args.sync_bn:
        cfg.sync_bn = 'torch'

    from vitdense.checkpoint import load_checkpoint_file
    from vitdense.checkpoint.io import check_fits, install_safe_loading
    install_safe_loading()  # also for a config that does not list vitdense.engine in custom_imports
    resume_from = find_resume_checkpoint(cfg.work_dir) if args.resume == 'auto' else args.resume
    checkpoint = None
    if resume_from:
        # read it here (weights_only, one-line refusals) to check it before the runner trusts it
        checkpoint = load_checkpoint_file(resume_from)
        if not isinstance(checkpoint, dict) or 'meta' not in checkpoint or 'state_dict' not in checkpoint:
            raise UserError(f'{resume_from} is not a training checkpoint (no meta / state_dict); --resume takes a '
                            '.pth that tools/train.py wrote; to start from its weights use '
                            f'--cfg-options load_from={resume_from}')
        cfg.resume, cfg.load_from = True, resume_from
        # mmengine builds the data sampler with the config's seed before it reads the checkpoint: without a
        # seed in the config, take the interrupted run's so the data order continues where it stopped
        randomness = dict(cfg.get('randomness') or {})
        if randomness.get('seed') is None and checkpoint['meta'].get('seed') is not None:
            cfg.randomness = dict(randomness, seed=checkpoint['meta']['seed'])
    elif args.resume == 'auto':
        print(f'warning: --resume: no checkpoint in {cfg.work_dir} yet, starting from scratch', file=sys.stderr)
    check_sharding_strategy(cfg)
    setup_cpu_distributed(cfg)

    runner = build_runner(cfg)
    if checkpoint is not None:
        check_fits(unwrapped_model(runner), checkpoint, resume_from)
        del checkpoint
    runner.train()


if __name__ == '__main__':
    run_tool(main)
