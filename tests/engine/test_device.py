"""A model on CUDA with mmcv ops compiled without CUDA stops at start-up with one line and the install command.

These machines have CPU-only mmcv ops and no GPU: the installed mmcv is the real CPU-only case, and the device
the tools would pick is faked to be CUDA (``default_device``), or asked for (``tools/demo.py --device cuda``).
"""
import os

import pytest

import vitdense.engine.device as device_check
from tests.conftest import REPO
from tests.test_bad_input import run_tool
from vitdense.errors import UserError

EXPECTED = ("error: the model runs on cuda but mmcv 2.1.0's ops were compiled without CUDA (RoIAlign, nms and "
            "deformable attention would fail inside mmcv); rebuild them with: VITDENSE_CUDA=1 bash tools/install.sh")
DET_MINI = os.path.join(REPO, 'configs/swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py')
SEG_MINI = os.path.join(REPO, 'configs/convnext/upernet_convnext-t_mini-ade20k.py')
IMAGE = os.path.join(REPO, 'data/mini/coco_val2017_mini/mmpose/000000000785.jpg')


def test_installed_mmcv_here_is_cpu_only():
    # the premise of the tool tests below: this machine's mmcv carries no CUDA kernels
    assert device_check.mmcv_ops_cuda_version() is None


def test_check_refuses_cuda_only_without_cuda_kernels(monkeypatch):
    with pytest.raises(UserError) as err:
        device_check.check_mmcv_ops_for_device('cuda:1')
    assert 'error: ' + str(err.value) == EXPECTED
    device_check.check_mmcv_ops_for_device('cpu')  # CPU kernels serve a CPU model
    monkeypatch.setattr(device_check, 'default_device', lambda: 'cpu')
    device_check.check_mmcv_ops_for_device()
    monkeypatch.setattr(device_check, 'mmcv_ops_cuda_version', lambda: '13.0')
    device_check.check_mmcv_ops_for_device('cuda')  # a CUDA build passes


@pytest.mark.parametrize('tool, args', [
    ('train.py', [DET_MINI, '--cfg-options', 'train_cfg.max_iters=1']),
    ('train.py', [SEG_MINI]),
    ('test.py', [DET_MINI, 'no-such-checkpoint.pth']),
    ('demo.py', [DET_MINI, 'no-such-checkpoint.pth', IMAGE]),
])
def test_tools_stop_with_one_line_on_a_cuda_device(tool, args, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(device_check, 'default_device', lambda: 'cuda')
    code = run_tool(os.path.join(REPO, 'tools', tool), *args, *(['--out-dir', tmp_path] if tool == 'demo.py' else
                                                               ['--work-dir', tmp_path]))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err[-20:]
    assert err == [EXPECTED]


def test_demo_with_device_cuda(capsys, tmp_path):
    code = run_tool(os.path.join(REPO, 'tools/demo.py'), DET_MINI, 'no-such-checkpoint.pth', IMAGE,
                    '--device', 'cuda', '--out-dir', tmp_path)
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [EXPECTED]
