"""The ``vitdense`` command: listing, config-name resolution, one-line errors, tools run through it."""
import os
import subprocess
import sys

import pytest

from vitdense import cli, zoo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DET_MINI = 'swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco'


def run_cli(*args, cwd):
    """``python -m vitdense ARGS`` in a fresh interpreter importing this checkout, from ``cwd``."""
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, '-m', 'vitdense', *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_list_configs_prints_the_matching_shipped_configs(capsys):
    cli.main(['list-configs', 'swin'])
    names = capsys.readouterr().out.split()
    assert names == zoo.list_configs('swin')
    assert DET_MINI in names and 'convnext/upernet_convnext-t_mini-ade20k' not in names
    assert all('swin' in n for n in names)
    cli.main(['list-configs', 'swin/*mini*', '--paths'])
    paths = capsys.readouterr().out.split()
    assert [os.path.realpath(p) for p in paths] == [os.path.realpath(os.path.join(REPO, 'configs', n + '.py'))
                                                    for n in ('swin/cascade-mask-rcnn_swin-t-p4-w7_fpn_mini-coco',
                                                              'swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco',
                                                              'swin/mask2former_swin-t_mini-ade20k',
                                                              'swin/swin-t-p4-w7_mini-coco-crops',
                                                              'swin/upernet_swin-t-p4-w7_mini-ade20k')]


@pytest.mark.parametrize('args, message', [
    ([], 'error: no command given; vitdense --help lists the commands'),
    (['trian', 'x'], "error: unknown command 'trian'; did you mean train"),
    (['train', 'mask-rcnn_swin-t-p4-w7_fpn_mini-coc'],
     'error: config not found: mask-rcnn_swin-t-p4-w7_fpn_mini-coc (neither a file nor a shipped config name); '
     'close matches: swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco'),
    (['list-configs', 'no-such-family'], "error: no shipped config matches 'no-such-family'"),
], ids=['no-command', 'typo', 'unknown-config', 'no-match'])
def test_bad_input_is_one_line_and_exit_status_2(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith(message), err


def test_config_names_become_paths_for_every_tool_argument():
    path = zoo.find_config(DET_MINI)
    assert os.path.realpath(path) == os.path.realpath(os.path.join(REPO, 'configs', DET_MINI + '.py'))
    assert cli.resolve_args([os.path.basename(DET_MINI), '--work-dir', 'out'], config_first=True) == [
        path, '--work-dir', 'out']
    # transfer's --model CONFIG CHECKPOINT and convert's --config: names anywhere, other words untouched
    assert cli.resolve_args(['--model', DET_MINI + '.py', 'none', '--config', 'vitdense::' + DET_MINI + '.py'],
                            config_first=False) == ['--model', path, 'none', '--config', path]


def test_every_subcommand_has_its_tool_in_the_package():
    for command, (script, _, _) in cli.TOOLS.items():
        assert os.path.isfile(os.path.join(zoo.TOOLS_DIR, script)), command


def test_a_tool_runs_through_the_command_from_another_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cli.main(['flops', os.path.basename(DET_MINI), '--backbone-only', '--shape', '64', '--depth', '0'])
    out = capsys.readouterr().out
    assert 'vitdense.SwinTransformer' in out and 'params:    27.52 M' in out, out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(['train', '--help'])
    assert exit_info.value.code == 0 and '--resume' in capsys.readouterr().out


def test_train_then_test_in_one_command_for_a_user_config_inheriting_through_the_prefix(tmp_path):
    """A config outside the checkout inherits a shipped one by ``vitdense::``, trains 2 iterations on the bundled
    data and its last checkpoint is evaluated, all by ``vitdense train CONFIG --test`` (the cheapest mini config:
    EfficientNet-Lite0 on 96 px crops)."""
    (tmp_path / 'my_classifier.py').write_text(
        "_base_ = 'vitdense::timm/tf-efficientnet-lite0_mini-coco-crops.py'\n"
        "train_cfg = dict(max_iters=2, val_interval=2)\n")
    result = run_cli('train', 'my_classifier.py', '--test', '--work-dir', 'run', cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / 'run' / 'iter_2.pth').is_file()
    assert (tmp_path / 'run' / 'last_checkpoint').read_text().strip() == str(tmp_path / 'run' / 'iter_2.pth')
    metrics = [line for line in result.stdout.splitlines() if line.startswith('metrics: ')]
    assert len(metrics) == 1 and 'accuracy/top1=' in metrics[0], result.stdout[-2000:]
    assert any((tmp_path / 'run' / 'test').iterdir())  # the evaluation's own work dir
