"""tools/profile_iteration.py and tools/benchmark_optimizer.py run end to end on a small Mask R-CNN (the mini
config with a narrow Swin): their tables add up and name every part; tools/benchmark_linear.py on small shapes."""
import re

import pytest

from tests.tools.test_tools import DET_MINI, tool


@pytest.fixture(scope='module')
def small_config(tmp_path_factory):
    path = tmp_path_factory.mktemp('cfg') / 'mask-rcnn_small-swin_mini-coco.py'
    path.write_text(f'_base_ = {DET_MINI!r}\n'
                    'model = dict(backbone=dict(arch=dict(_delete_=True, embed_dim=16, depths=(1, 1, 1, 1), '
                    'num_heads=(1, 1, 2, 2)), init_cfg=None), neck=dict(in_channels=[16, 32, 64, 128]))\n')
    return str(path)


def test_profile_iteration_splits_runner_iterations_and_a_fixed_batch(small_config, capsys):
    tool('profile_iteration').main([small_config, '--runner-iters', '2', '--repeats', '2', '--threads', '1'])
    out = capsys.readouterr().out
    runner_rows = re.findall(r'^\s+(\d) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+) +(-?[\d.]+)  '
                             r'(\d+) / (\d+)$', out, re.M)
    assert [r[0] for r in runner_rows] == ['1', '2']
    for row in runner_rows:
        logged, data, fwd, bwd, optim, hooks, rest = map(float, row[1:8])
        assert fwd > 0 and bwd > 0 and optim > 0 and int(row[8]) > 0  # RoIs reached the bbox head
        assert logged == pytest.approx(data + fwd + bwd + optim + hooks + rest, abs=0.03)
    # the fixed batch: each part's forward and backward, and the lines add up to the total they are shares of
    lines = dict(re.findall(r'^(\S.*?)\s+([\d.]+) s +[\d.]+%$', out, re.M))
    for part in ('backbone', 'neck', 'rpn_head', 'roi_head.bbox_roi_extractor', 'roi_head.bbox_head',
                 'roi_head.mask_roi_extractor', 'roi_head.mask_head'):
        assert float(lines[f'forward  {part}']) > 0 and float(lines[f'backward {part}']) > 0, part
    total = re.search(r'train step total .*: ([\d.]+) s; forward ([\d.]+) s, backward ([\d.]+) s', out)
    train_step, forward, backward = map(float, total.groups())
    backward_lines = sum(float(v) for k, v in lines.items() if k.startswith('backward '))
    assert backward_lines == pytest.approx(backward, rel=0.02)  # the nodes plus the engine's share: the whole pass
    shares = sum(float(v) for k, v in lines.items() if not k.startswith('data'))
    assert shares == pytest.approx(train_step, rel=0.02)


def test_benchmark_optimizer_compares_the_variants(small_config, capsys):
    tool('benchmark_optimizer').main([small_config, '--repeats', '1', '--threads', '1'])
    out = capsys.readouterr().out
    rows = {m[0].strip(): (int(m[1]), float(m[2])) for m in
            re.findall(r'^(\w+ groups, [\w-]+)\s+(\d+) .* ([\d.e+-]+)$', out, re.M)}
    assert list(rows) == ['default groups, for-loop', 'merged groups, for-loop', 'merged groups, foreach',
                          'default groups, fused', 'merged groups, fused']
    # one group per tensor under mmengine's constructor (paramwise_cfg), decay / no decay once merged
    assert rows['default groups, for-loop'][0] > 50 and rows['merged groups, for-loop'][0] == 2
    # the same updates: bitwise for the for-loop and foreach kernels, to float rounding for the fused one
    assert rows['merged groups, for-loop'][1] == rows['merged groups, foreach'][1] == 0.0
    assert 0.0 <= rows['merged groups, fused'][1] < 1e-5


def test_benchmark_times_inference_next_to_mmdets_config(capsys):
    times = tool('benchmark').main([DET_MINI, '--test', '--compare', '--batches', '1', '--repeats', '2',
                                    '--warmup', '0'])
    reference, ours = times.values()
    assert [len(reference.wall), len(ours.wall)] == [2, 2] and not ours.losses
    out = capsys.readouterr().out
    assert ('inference (test_step), mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py in float32, vitdense in '
            'float32 on 1 batch(es)') in out
    minima = float(re.search(r'minima ([\d.]+)x', out).group(1))
    assert minima == pytest.approx(min(reference.wall) / min(ours.wall), abs=0.006)


def test_benchmark_amp_bf16_times_vitdense_as_the_bf16_tools_run_it(capsys):
    times = tool('benchmark').main([DET_MINI, '--test', '--amp', 'bf16', '--batches', '1', '--repeats', '1',
                                    '--warmup', '0'])
    assert list(times) == ['vitdense'] and len(times['vitdense'].wall) == 1
    assert 'inference (test_step), vitdense in bfloat16 on 1 batch(es)' in capsys.readouterr().out


def test_benchmark_runner_autocasts_a_bare_backbone_whole():
    import torch
    benchmark = tool('benchmark')
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    inputs = torch.randn(1, 3, 8, 8)
    seen = []
    backbone[0].register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    reference = benchmark.make_runner(backbone, inputs, None, backbone_only=True)()
    mixed = benchmark.make_runner(backbone, inputs, None, backbone_only=True, dtype=torch.bfloat16)()
    assert seen == [torch.float32, torch.bfloat16] and mixed.dtype == torch.float32
    assert 1e-4 < (mixed - reference).abs().max() / reference.abs().max() < 5e-2
    benchmark.make_runner(backbone, inputs, None, backbone_only=True, train=True, dtype=torch.bfloat16)()
    assert seen[-1] == torch.bfloat16 and all(p.grad is None for p in backbone.parameters())  # zeroed after


@pytest.mark.parametrize('argv, message', [
    (['--train', '--test'], 'error: --train and --test time different things: pass one of them'),
    (['--test', '--backbone-only'], 'error: --test times the whole model; for the backbone alone drop --test'),
])
def test_benchmark_refuses_mixed_modes_in_one_line(argv, message, capsys):
    from vitdense.runtime.errors import run_tool
    benchmark = tool('benchmark')
    with pytest.raises(SystemExit) as exit_info:
        run_tool(lambda: benchmark.main([DET_MINI, *argv]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [message]


def test_benchmark_linear_times_both_gemms_per_shape(capsys):
    tool('benchmark_linear').main(['--shapes', '64x8x16', '300x24x40', '--repeats', '1', '--threads', '1'])
    rows = re.findall(r'^(\d+x\d+x\d+) .*? ([\d.]+)x .*? ([\d.]+)x$', capsys.readouterr().out, re.M)
    assert [r[0] for r in rows] == ['64x8x16', '300x24x40']
    assert all(float(forward) > 0 and float(train) > 0 for _, forward, train in rows)
