"""How the tools start a run: launcher arguments, the runner, CPU multi-process set-up, sharding and precision."""
import argparse
import os
import sys

from mmengine.config import Config

from vitdense.engine.wrappers import unwrap_model
from vitdense.errors import UserError


def _sync_bn_to_bn(node) -> int:
    count = 0
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            count += 1
        for value in node.values():
            count += _sync_bn_to_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += _sync_bn_to_bn(value)
    return count


def add_launcher_args(parser) -> None:
    """``--launcher`` and the ``--local-rank`` that torch.distributed.launch passes (exported as LOCAL_RANK by
    :func:`parse_launcher_args`)."""
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher (dist_train.sh sets pytorch, slurm_train.sh slurm)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)


def parse_launcher_args(parser, argv=None):
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def setup_cpu_distributed(cfg: Config) -> None:
    """Multi-process training without CUDA (torchrun, ``--launcher pytorch``): gloo instead of nccl.

    mmengine's ``init_dist`` pins a CUDA device and its DDP wrappers pass CUDA device ids, so on a CPU-only
    machine the gloo process group is started here (mmengine then uses it as is), DDP gets no device ids (the
    Runner's ``model_wrapper_cfg``, or a FlexibleRunner's ``DDPStrategy.model_wrapper``), and SyncBN (which has no
    CPU kernel) becomes per-process BN. On GPU machines nothing changes.
    """
    import torch
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise UserError(f'--launcher {cfg.launcher} needs GPUs here; CPU multi-process training runs through '
                        'torchrun: bash tools/dist_train.sh CONFIG NUM_PROCS (--launcher pytorch)')
    flexible = cfg.get('runner_type') == 'FlexibleRunner'
    strategy = dict(cfg.get('strategy') or dict(type='DDPStrategy')) if flexible else {}
    if cfg.get('sync_bn') or strategy.get('sync_bn'):
        raise UserError('--sync-bn needs GPUs (SyncBatchNorm has no CPU kernel); drop it for CPU processes')
    if flexible and strategy.get('type') not in ('DDPStrategy', 'FSDPStrategy'):
        raise UserError(f"strategy type={strategy.get('type')!r} needs GPUs; CPU processes run DDPStrategy "
                        '(or FSDPStrategy, see the README)')
    import datetime
    import torch.distributed as dist
    env_cfg = cfg.get('env_cfg') or {}
    dist_cfg = dict(env_cfg.get('dist_cfg') or {}, backend='gloo')
    cfg.env_cfg = dict(env_cfg, dist_cfg=dist_cfg)
    if not dist.is_initialized():
        timeout = dist_cfg.get('timeout')
        dist.init_process_group(backend='gloo', **({'timeout': datetime.timedelta(seconds=timeout)}
                                                   if timeout else {}))
    if flexible and strategy['type'] == 'FSDPStrategy':
        # FSDP initialises on the device it is given (mmengine passes the CUDA index LOCAL_RANK)
        strategy['model_wrapper'] = dict(strategy.get('model_wrapper') or dict(type='MMFullyShardedDataParallel'),
                                         device_id='cpu')
    elif flexible:
        strategy['model_wrapper'] = dict(strategy.get('model_wrapper') or dict(
            type='MMDistributedDataParallel', broadcast_buffers=False), device_ids=None)
    else:
        wrapper = dict(cfg.get('model_wrapper_cfg') or dict(
            type='MMDistributedDataParallel', broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False)))
        wrapper['device_ids'] = None
        cfg.model_wrapper_cfg = wrapper
    if flexible:
        cfg.strategy = strategy
    if _sync_bn_to_bn(cfg.model):
        print('warning: SyncBN -> BN for CPU processes (batch statistics per process)', file=sys.stderr)


def build_runner(cfg: Config):
    """mmengine's ``Runner``, or the runner the config names in ``runner_type`` (``'FlexibleRunner'`` with a
    ``strategy``), as mmdet's and mmseg's tools/train.py and tools/test.py do."""
    if 'runner_type' not in cfg:
        from mmengine.runner import Runner
        return Runner.from_cfg(cfg)
    from mmengine.registry import RUNNERS
    return RUNNERS.build(cfg)


def unwrapped_model(runner):
    """The runner's model without its DDP / FSDP wrapper. A FlexibleRunner's strategy would build the model only
    when training starts; it is built here (by that strategy, which then takes it as it is) so that it can be
    checked against a checkpoint first."""
    if isinstance(runner.model, dict):
        runner.model = runner.strategy.build_model(runner.model)
    return unwrap_model(runner.model)


def check_sharding_strategy(cfg: Config) -> None:
    """A FlexibleRunner with ``FSDPStrategy`` runs (on GPUs, or on CPUs over gloo) with mmengine's default
    ``use_orig_params=True``, without vitdense's layer-decay constructor.

    mmengine builds the optimiser after FSDP has replaced the parameters by flat 1-D shards, so a constructor that
    reads parameter shapes (layer decay gives every 1-D parameter no weight decay) would silently mis-group them;
    mmengine 0.10.7's way around that (a pre-built optimiser re-mapped onto the shards) fails with this torch. Frozen
    stages share FSDP's flat parameters with trained ones only with ``use_orig_params=True``. Checkpoints are single
    files (``state_dict_cfg='full'``), which vitdense's atomic checkpoint hook writes.
    """
    strategy = cfg.get('strategy') or {}
    if cfg.get('runner_type') != 'FlexibleRunner' or strategy.get('type') != 'FSDPStrategy':
        return
    if not (strategy.get('model_wrapper') or {}).get('use_orig_params', True):
        raise UserError('FSDPStrategy needs model_wrapper=dict(use_orig_params=True) for frozen stages '
                        '(parameters with and without gradients in one flat parameter)')
    state_dict_cfg = strategy.get('state_dict_cfg', 'local')
    if state_dict_cfg != 'full':
        raise UserError(f'FSDPStrategy with state_dict_cfg={state_dict_cfg!r} saves a folder of shards per '
                        "checkpoint; vitdense's checkpoints are single files: set strategy.state_dict_cfg='full'")
    if 'LayerDecayOptimWrapperConstructor' in str(cfg.optim_wrapper.get('constructor', '')):
        raise UserError("FSDPStrategy cannot keep layer decay's per-parameter groups (mmengine builds the optimiser "
                        'on flattened shards); use strategy=dict(type=\'DDPStrategy\') or drop the constructor')


def set_mixed_precision(cfg: Config, precision: str) -> None:
    """``--amp fp16``: mmengine's AmpOptimWrapper (float16 autocast, dynamic loss scaling; GPU, NPU, MLU only).
    ``--amp bf16``: :class:`vitdense.engine.BF16AutocastOptimWrapper` (bfloat16 autocast, no loss scaling; CPU too)."""
    from mmengine.device import get_device
    wrapper = cfg.optim_wrapper
    if wrapper.get('type', 'OptimWrapper') not in ('OptimWrapper', 'AmpOptimWrapper',
                                                   'vitdense.BF16AutocastOptimWrapper'):
        raise UserError(f"--amp sets optim_wrapper.type, but this config's is {wrapper.type!r} "
                        '(set its precision in the config instead)')
    if precision == 'fp16':
        if get_device() == 'cpu':
            raise UserError('--amp fp16 needs a GPU (float16 autocast with loss scaling); on a CPU use --amp bf16')
        wrapper.type = 'AmpOptimWrapper'
        wrapper.setdefault('loss_scale', 'dynamic')
    elif precision == 'bf16':
        wrapper.type = 'vitdense.BF16AutocastOptimWrapper'
        for key in ('loss_scale', 'dtype'):  # AmpOptimWrapper's arguments
            wrapper.pop(key, None)
    else:
        raise UserError(f"--amp takes fp16 or bf16, got {precision!r}")


def set_test_precision(cfg: Config, precision: str) -> None:
    """``tools/test.py --amp bf16``: the test loop becomes :class:`vitdense.engine.BF16TestLoop`."""
    if precision != 'bf16':
        raise UserError(f"tools/test.py --amp takes bf16, got {precision!r}")
    loop = cfg.get('test_cfg') or {}
    if loop.get('type', 'TestLoop') not in ('TestLoop', 'vitdense.BF16TestLoop'):
        raise UserError(f"--amp sets test_cfg.type, but this config's is {loop['type']!r} "
                        '(set its precision in the config instead)')
    loop.pop('fp16', None)  # mmengine's whole-step autocast; BF16TestLoop casts the network only
    cfg.test_cfg = dict(loop, type='vitdense.BF16TestLoop')
