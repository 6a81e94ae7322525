"""tools/train.py builds the runner the config asks for, and trains in bfloat16 on a CPU.

* ``runner_type='FlexibleRunner'`` with ``strategy=dict(type='DDPStrategy')``, launched by tools/dist_train.sh
  as 2 gloo processes: a probe hook (a module the config imports) records, on each rank, the runner, strategy
  and model wrapper the run used and the weights it ended with.
* ``--amp bf16``: vitdense's BF16AutocastOptimWrapper runs the forward under bfloat16 autocast (the backbone's
  convolutions and linear layers compute in bfloat16) while the parameters stay float32 and move.
"""
import json
import os
import runpy
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from tests.conftest import REPO, build_model, det_batch, seg_batch
from tests.tools.test_resume_and_dist import free_port, tiny_config

TRAIN = os.path.join(REPO, 'tools/train.py')
DIST_TRAIN = os.path.join(REPO, 'tools/dist_train.sh')

PROBE = '''
import hashlib, json, os
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from vitdense.engine.wrappers import unwrap_model


@HOOKS.register_module()
class RunnerProbe(Hook):
    """Writes probe_rank<R>.json into the work dir: what ran, and a digest of the final weights."""

    def before_train(self, runner):
        self.seen = dict(runner=type(runner).__name__, strategy=type(getattr(runner, 'strategy', None)).__name__,
                         wrapper=type(runner.model).__name__, world_size=runner.world_size)

    def after_train(self, runner):
        model = unwrap_model(runner.model)
        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode() + tensor.detach().float().contiguous().numpy().tobytes())
        self.seen['weights'] = digest.hexdigest()
        with open(os.path.join(runner.work_dir, f'probe_rank{runner.rank}.json'), 'w') as f:
            json.dump(self.seen, f)
'''


def probed_config(tmp_path, task='det', max_iters=2, **changes):
    """The tiny config with the probe hook, ``max_iters`` iterations, one checkpoint at the end."""
    (tmp_path / 'runner_probe.py').write_text(PROBE)
    cfg = Config.fromfile(tiny_config(task, tmp_path / 'tiny.py'))
    cfg.custom_imports.imports = [*cfg.custom_imports.imports, 'runner_probe']
    cfg.custom_hooks = [*cfg.custom_hooks, dict(type='RunnerProbe')]
    cfg.train_cfg.max_iters = max_iters
    cfg.default_hooks.checkpoint.interval = max_iters
    cfg.merge_from_dict(changes)
    path = str(tmp_path / 'probed.py')
    cfg.dump(path)
    return path


def run_dist_train(tmp_path, config, work_dir, *args):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', PYTHON=sys.executable,
               PORT=str(free_port()), PYTHONPATH=f'{tmp_path}:{REPO}')
    return subprocess.run(['bash', DIST_TRAIN, config, '2', '--work-dir', str(work_dir), *args], env=env,
                          capture_output=True, text=True, timeout=600)


def probes(work_dir):
    return [json.load(open(os.path.join(work_dir, f'probe_rank{rank}.json'))) for rank in (0, 1)]


def test_flexible_runner_ddp_strategy_over_two_gloo_processes(tmp_path):
    config = probed_config(tmp_path, runner_type='FlexibleRunner', strategy=dict(type='DDPStrategy'),
                           train_dataloader=dict(batch_size=1))
    work_dir = tmp_path / 'work'
    result = run_dist_train(tmp_path, config, work_dir)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    rank0, rank1 = probes(work_dir)
    assert rank0['runner'] == rank1['runner'] == 'FlexibleRunner'
    assert rank0['strategy'] == rank1['strategy'] == 'DDPStrategy'
    assert rank0['wrapper'] == rank1['wrapper'] == 'MMDistributedDataParallel'
    assert rank0['world_size'] == rank1['world_size'] == 2
    # DDP averaged the gradients: the two processes (different images) end with the same weights
    assert rank0['weights'] == rank1['weights']
    # the checkpoint (the DDP wrapper's state dict, 'module.' keys) is what tools/test.py and --resume accept
    path = work_dir / 'iter_2.pth'
    checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    assert checkpoint['meta']['iter'] == 2 and all(k.startswith('module.') for k in checkpoint['state_dict'])
    from vitdense.checkpoint.io import check_fits
    check_fits(build_model(Config.fromfile(tiny_config('det', tmp_path / 'plain.py'))), checkpoint, str(path))


def test_flexible_runner_fsdp_strategy_over_two_gloo_processes(tmp_path):
    """FSDP on CPUs (vitdense passes device_id='cpu'; gloo), frozen stages included (use_orig_params=True, mmengine's
    default); a full state dict lands in one checkpoint that tools/test.py accepts."""
    config = probed_config(tmp_path, runner_type='FlexibleRunner',
                           strategy=dict(type='FSDPStrategy', state_dict_cfg='full'),
                           model=dict(backbone=dict(frozen_stages=1)), train_dataloader=dict(batch_size=1))
    work_dir = tmp_path / 'work'
    result = run_dist_train(tmp_path, config, work_dir)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    for probe in probes(work_dir):
        assert (probe['runner'], probe['strategy'], probe['wrapper'], probe['world_size']) == \
            ('FlexibleRunner', 'FSDPStrategy', 'MMFullyShardedDataParallel', 2)
    path = work_dir / 'iter_2.pth'
    checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    assert checkpoint['meta']['iter'] == 2
    from vitdense.checkpoint.io import check_fits
    fresh = build_model(Config.fromfile(tiny_config('det', tmp_path / 'plain.py')))
    check_fits(fresh, checkpoint, str(path))


def test_fsdp_settings_vitdense_cannot_use_are_one_line(tmp_path):
    from vitdense.errors import UserError
    from vitdense.runtime.launch import check_sharding_strategy
    cfg = Config.fromfile(tiny_config('seg', tmp_path / 'tiny.py'))  # ConvNeXt: layer decay
    cfg.merge_from_dict(dict(runner_type='FlexibleRunner', strategy=dict(type='FSDPStrategy')))
    with pytest.raises(UserError, match=r"^FSDPStrategy with state_dict_cfg='local' saves a folder of shards"):
        check_sharding_strategy(cfg)
    cfg.strategy.state_dict_cfg = 'full'
    with pytest.raises(UserError, match=r"^FSDPStrategy cannot keep layer decay's per-parameter groups"):
        check_sharding_strategy(cfg)
    cfg.strategy.model_wrapper = dict(use_orig_params=False)
    with pytest.raises(UserError, match=r'^FSDPStrategy needs model_wrapper=dict\(use_orig_params=True\)'):
        check_sharding_strategy(cfg)


# ---- bfloat16 --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('task', ['seg', 'det'])
def test_bf16_autocast_training_step_on_cpu(task, tmp_path):
    cfg = Config.fromfile(tiny_config(task, tmp_path / 'tiny.py'))
    model = build_model(cfg)
    data = det_batch(model, hw=(96, 128)) if task == 'det' else seg_batch(model, hw=(64, 64))
    dtypes = []  # the output dtype of every convolution and linear layer in the backbone
    for module in model.backbone.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    # the last layer of the head: mmseg's decode heads run their forward as self.forward(...) in loss()
    last_layer = model.decode_head.conv_seg if task == 'seg' else model.roi_head.mask_head.conv_logits
    head_dtypes = []
    last_layer.register_forward_hook(lambda module, args, output: head_dtypes.append(output.dtype))
    watched = [next(p for p in model.backbone.parameters() if p.requires_grad)]  # the stem's first weight
    wrapper_cfg = dict(cfg.optim_wrapper, type='vitdense.BF16AutocastOptimWrapper')
    from mmengine.optim import build_optim_wrapper
    wrapper = build_optim_wrapper(model, wrapper_cfg)
    model.train()
    before = watched[0].detach().clone()
    with wrapper.optim_context(model):
        total, _ = model.parse_losses(model(**data, mode='loss'))
    assert dtypes and all(d == torch.bfloat16 for d in dtypes), dtypes
    assert head_dtypes == [torch.bfloat16]
    assert torch.isfinite(total) and total > 0
    wrapper.update_params(total)
    assert watched[0].dtype == torch.float32 and not torch.equal(watched[0], before)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_train_tool_amp_bf16_trains_and_amp_fp16_needs_a_gpu(tmp_path, capsys):
    config = probed_config(tmp_path, task='seg', max_iters=1)
    sys.path.insert(0, str(tmp_path))  # the probe module
    argv = sys.argv
    try:
        sys.argv = [TRAIN, config, '--work-dir', str(tmp_path / 'bf16'), '--amp', 'bf16']
        runpy.run_path(TRAIN, run_name='__main__')
        written = Config.fromfile(str(tmp_path / 'bf16' / 'probed.py'))
        assert written.optim_wrapper.type == 'vitdense.BF16AutocastOptimWrapper'
        assert torch.load(tmp_path / 'bf16' / 'iter_1.pth', weights_only=True)['meta']['iter'] == 1
        if not torch.cuda.is_available():
            sys.argv = [TRAIN, config, '--work-dir', str(tmp_path / 'fp16'), '--amp']
            with pytest.raises(SystemExit) as exit_:
                runpy.run_path(TRAIN, run_name='__main__')
            assert exit_.value.code == 2
            assert capsys.readouterr().err.strip().splitlines()[-1] == \
                'error: --amp fp16 needs a GPU (float16 autocast with loss scaling); on a CPU use --amp bf16'
    finally:
        sys.argv = argv
        sys.path.remove(str(tmp_path))


def test_test_precision_sets_the_bf16_loop_or_says_why_not():
    from vitdense.errors import UserError
    from vitdense.runtime.launch import set_test_precision
    cfg = Config(dict(test_cfg=dict(type='TestLoop', fp16=True)))
    set_test_precision(cfg, 'bf16')
    assert cfg.test_cfg == dict(type='vitdense.BF16TestLoop')
    cfg = Config(dict(test_cfg=dict(type='MyLoop')))
    with pytest.raises(UserError, match=r"^--amp sets test_cfg.type, but this config's is 'MyLoop'"):
        set_test_precision(cfg, 'bf16')
