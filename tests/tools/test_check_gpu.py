"""tools/check_gpu.py without a GPU: the one-line refusal, and its comparison / table logic run on the CPU."""
import copy
import math
import os
import runpy

import pytest
import torch
import torch.nn as nn

from tests.conftest import REPO
from tests.test_bad_input import run_tool
from vitdense.analysis.speed import Speed
from vitdense.errors import UserError

SCRIPT = os.path.join(REPO, 'tools/check_gpu.py')
check_gpu = runpy.run_path(SCRIPT)
Row = check_gpu['Row']


def test_no_gpu_one_line_exit_2(capsys, tmp_path):
    assert not torch.cuda.is_available()  # these machines have none
    out = tmp_path / 'table.md'
    assert run_tool(SCRIPT, '--out', out) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f'error: no CUDA device: torch {torch.__version__} sees no GPU (torch.cuda.is_available() is False); '
        'run tools/check_gpu.py on a machine with an NVIDIA GPU']
    assert not out.exists()


def test_cpu_only_mmcv_ops_and_non_cuda_device_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)  # a GPU host with this machine's mmcv
    with pytest.raises(UserError, match=r"^the model runs on cuda but mmcv 2.1.0's ops were compiled without CUDA"):
        check_gpu['require_cuda']('cuda')
    with pytest.raises(UserError, match=r'^--device must be a CUDA device \(cuda or cuda:N\), got cpu$'):
        check_gpu['require_cuda']('cpu')


def test_relative_error():
    ref = [torch.tensor([3.0, 4.0], dtype=torch.float64), torch.ones(2, 2)]
    near = [torch.tensor([3.0, 4.0 + 5e-3], dtype=torch.float64), torch.ones(2, 2)]
    assert check_gpu['relative_error'](ref, ref) == 0.0
    assert check_gpu['relative_error'](near, ref) == pytest.approx(1e-3, rel=1e-9)  # 5e-3 / ||(3, 4)||
    assert check_gpu['relative_error']([near[0], 2 * ref[1]], ref) == pytest.approx(1.0)  # the worst pair
    assert check_gpu['relative_error'](ref[:1], ref) == math.inf
    assert check_gpu['relative_error']([ref[0], torch.ones(4)], ref) == math.inf
    assert check_gpu['relative_error']([torch.tensor([3.0, math.nan]), ref[1]], ref) == math.inf


class TinyBackbone(nn.Module):
    """Two feature maps, like a pyramid backbone."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.stage = nn.Conv2d(8, 16, 3, stride=2, padding=1)

    def forward(self, x):
        a = torch.relu(self.stem(x))
        return a, self.stage(a)


class DriftsWhenCopied(TinyBackbone):
    """Stands in for a device whose kernels are wrong: the copy compare_to_cpu moves there has all weights
    scaled by 1 + 1e-3."""

    def __deepcopy__(self, memo):
        twin = TinyBackbone()
        twin.load_state_dict({k: v * (1 + 1e-3) for k, v in self.state_dict().items()})
        return twin


def test_compare_to_cpu_passes_same_numerics_and_flags_a_drift():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 20)
    model = TinyBackbone()
    rows = check_gpu['compare_to_cpu']('Tiny', model, x, 'cpu', ('fp32', 'bf16'))
    assert [(r.check, r.limit, r.status) for r in rows] == [
        ('Tiny fp32 vs CPU fp32', '1e-04 / 1e-03', 'pass'), ('Tiny bf16 vs CPU fp32', '5e-02 / 3e-01', 'pass')]
    assert rows[0].result == 'outputs 0.0e+00, grads 0.0e+00'
    bf16_out = float(rows[1].result.split()[1].rstrip(','))
    assert 1e-4 < bf16_out < 5e-2  # autocast really ran in bf16 (8 significant bits)

    drifting = DriftsWhenCopied()
    drifting.load_state_dict(model.state_dict())
    row, = check_gpu['compare_to_cpu']('Tiny', drifting, x, 'cpu', ('fp32',))
    assert row.status == 'FAIL'
    out_err = float(row.result.split()[1].rstrip(','))
    assert 1e-3 < out_err < 3e-3  # weights and bias 1e-3 off, through two layers
    reference = check_gpu['forward_backward'](model, x, None)[0]
    assert out_err == pytest.approx(check_gpu['relative_error'](
        check_gpu['forward_backward'](copy.deepcopy(drifting), x, None)[0], reference), abs=5e-5)  # printed as .1e


def test_clustering_backbones_pass_amp_on_finite_values():
    x = torch.randn(1, 3, 16, 20)
    row, = check_gpu['compare_to_cpu']('BOAT-like', TinyBackbone(), x, 'cpu', ('bf16',))
    assert (row.limit, row.status) == ('finite', 'pass')


def test_every_family_and_mini_config_listed():
    names = [name for name, _, _ in check_gpu['BACKBONES']]
    assert len(names) == 13 and {'BOAT-Swin-T paper', 'BOAT-Swin-T pytorch-boat', 'BOAT-CSWin-T paper',
                                 'BOAT-CSWin-T pytorch-boat'} <= set(names)
    assert all(os.path.isfile(os.path.join(REPO, config)) for _, config, _ in check_gpu['BACKBONES'])
    configs = [os.path.relpath(c, REPO) for c in check_gpu['mini_train_configs']()]
    assert len(configs) == 24
    assert sum(os.path.basename(c).startswith('mask-rcnn_') for c in configs) == 11
    assert 'configs/swin/cascade-mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py' in configs
    assert 'configs/swin/mask2former_swin-t_mini-ade20k.py' in configs
    assert 'configs/swin/upernet_swin-t-p4-w7_mini-ade20k.py' in configs


def test_train_row():
    row = check_gpu['train_row']('configs/x.py', 3, [2.5, 2.0, 1.25],
                                 {'coco/bbox_mAP': 0.125, 'coco/bbox_mAP_50': 0.3, 'coco/segm_mAP': 0.0625},
                                 12.4, 2048.0)
    assert row == Row('train', 'configs/x.py (3 iters + eval)',
                      'loss 2.500 -> 1.250, bbox_mAP 0.125, segm_mAP 0.062; 12 s, peak 2048 MB',
                      'finite losses, metrics', 'pass')
    assert check_gpu['train_row']('c', 3, [2.5, math.nan, 1.0], {'mIoU': 1.0}, 1, 1).status == 'FAIL'
    assert check_gpu['train_row']('c', 3, [2.5, 2.0], {'mIoU': 1.0}, 1, 1).status == 'FAIL'  # an iteration lost
    assert check_gpu['train_row']('c', 1, [2.5], None, 1, 1).status == 'FAIL'


def test_benchmark_rows_and_table(tmp_path):
    results = {'vitdense SwinTransformer': Speed('a', 20.0, 0.05, [0.05], 300 * 2**20, 'cuda'),
               'mmdet SwinTransformer': Speed('b', 16.0, 0.0625, [0.0625], 400 * 2**20, 'cuda'),
               'timm SwinTransformer': Speed('c', 25.0, 0.04, [0.04], 200 * 2**20, 'cuda')}
    rows = check_gpu['benchmark_rows']('Swin-T backbone', results)
    assert [r.result for r in rows] == ['20.00 img/s, peak 300 MB', '16.00 img/s, peak 400 MB',
                                        '25.00 img/s, peak 200 MB', 'throughput 1.25x, peak memory 0.75x',
                                        'throughput 0.80x, peak memory 1.50x']
    assert rows[-1].check == 'Swin-T backbone: vitdense / timm SwinTransformer'
    rows = rows[:2] + rows[3:4]
    rows += [Row('backbones', 'a | b', 'x', '1e-04 / 1e-03', 'pass'), Row('train', 'c', 'y', 'z', 'FAIL')]
    text = check_gpu['format_table'](rows, 'header line')
    assert text.splitlines() == [
        'header line', '',
        '| section | check | result | limit | status |', '|---|---|---|---|---|',
        '| benchmarks | Swin-T backbone: vitdense SwinTransformer | 20.00 img/s, peak 300 MB |  | info |',
        '| benchmarks | Swin-T backbone: mmdet SwinTransformer | 16.00 img/s, peak 400 MB |  | info |',
        '| benchmarks | Swin-T backbone: vitdense / mmdet SwinTransformer | throughput 1.25x, peak memory 0.75x |  '
        '| info |',
        '| backbones | a \\| b | x | 1e-04 / 1e-03 | pass |',
        '| train | c | y | z | FAIL |', '',
        '1 passed, 1 failed']
    out = tmp_path / 'sub' / 'table.md'
    check_gpu['write_table'](text, str(out))
    assert out.read_text() == text
