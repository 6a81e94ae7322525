"""The launchers run the interpreter they are given ($PYTHON), never whichever ``python`` comes first on PATH.

PATH here starts with a fake ``python`` and ``python3`` that only say they ran and exit 3: a launcher that
started a bare ``python`` would run them.
"""
import os
import subprocess
import sys

from tests.conftest import REPO
from tests.tools.test_resume_and_dist import free_port

DIST_TRAIN = os.path.join(REPO, 'tools/dist_train.sh')
SLURM_TRAIN = os.path.join(REPO, 'tools/slurm_train.sh')


def fake_path(folder, srun_log=None):
    """An environment whose PATH starts with fake interpreters (and a fake ``srun`` writing its arguments to
    ``srun_log``, one a line)."""
    folder.mkdir()
    for name in ('python', 'python3'):
        (folder / name).write_text('#!/bin/sh\necho "fake $0 ran" >&2\nexit 3\n')
    (folder / 'srun').write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {srun_log}\n')
    for path in folder.iterdir():
        path.chmod(0o755)
    env = dict(os.environ, PATH=f'{folder}:{os.environ["PATH"]}', OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    env.pop('PYTHON', None)
    return env


def test_dist_train_runs_PYTHON_for_torchrun_and_its_workers(tmp_path):
    env = fake_path(tmp_path / 'bin', tmp_path / 'srun.txt')
    missing = tmp_path / 'no_such_config.py'
    args = ['bash', DIST_TRAIN, str(missing), '1']

    unset = subprocess.run(args, env=dict(env, PORT=str(free_port())), capture_output=True, text=True, timeout=60)
    assert unset.returncode == 3 and f'fake {tmp_path}/bin/python3 ran' in unset.stderr, unset.stderr

    given = subprocess.run(args, env=dict(env, PORT=str(free_port()), PYTHON=sys.executable), capture_output=True,
                           text=True, timeout=300)
    output = given.stdout + given.stderr
    assert 'fake' not in output
    # torchrun ran under PYTHON, and so did its worker: tools/train.py's own one-line refusal
    assert given.returncode != 0 and f'error: config not found: {missing}' in output, output[-3000:]


def test_slurm_train_hands_srun_PYTHON(tmp_path):
    srun_log = tmp_path / 'srun.txt'
    env = fake_path(tmp_path / 'bin', srun_log)
    args = ['bash', SLURM_TRAIN, 'gpu', 'job', 'configs/x.py', 'work_dirs/x', '--amp']
    train_args = ['-u', 'tools/train.py', 'configs/x.py', '--work-dir=work_dirs/x', '--launcher', 'slurm', '--amp']

    subprocess.run(args, env=env, check=True, timeout=60)
    launched = srun_log.read_text().splitlines()
    assert launched[-len(train_args) - 1:] == ['python3', *train_args]

    subprocess.run(args, env=dict(env, PYTHON=sys.executable), check=True, timeout=60)
    launched = srun_log.read_text().splitlines()
    assert launched[-len(train_args) - 1:] == [sys.executable, *train_args]
