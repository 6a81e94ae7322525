"""tools/install.sh's choice of mmcv flavour and cache key, with VITDENSE_BUILD_ONLY=1 (nothing installed) on
stand-in wheels whose mmcv/_ext carries, or lacks, the section nvcc writes device code into."""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

from tests.conftest import REPO

INSTALL = os.path.join(REPO, 'tools/install.sh')
TORCH = torch.__version__.split('+')[0]
OLD_KEY = f"mmcv-2.1.0-torch{torch.__version__.replace('+', '_')}"


NEEDS_NVCC = pytest.mark.skipif(shutil.which('nvcc') is None and not os.environ.get('CUDA_HOME'), reason='needs nvcc')


def _cuobjdump():
    """What install.sh finds besides a toolkit's own: cuobjdump on PATH, or the one triton's wheel ships."""
    try:
        import triton
        shipped = os.path.join(os.path.dirname(triton.__file__), 'backends', 'nvidia', 'bin', 'cuobjdump')
    except ImportError:
        shipped = ''
    return shutil.which('cuobjdump') or (shipped if os.access(shipped, os.X_OK) else None)


NEEDS_CUOBJDUMP = pytest.mark.skipif(_cuobjdump() is None, reason='needs cuobjdump (PATH or triton)')
# device kernels named as mmcv 2.1.0 names those of RoIAlign, nms and multi-scale deformable attention
KERNELS = {
    'roi_align': 'template <typename T> __global__ void roi_align_forward_cuda_kernel(T* x) { x[0] += 1; }\n'
                 'template __global__ void roi_align_forward_cuda_kernel<float>(float*);\n',
    'nms': '__global__ void nms_cuda(float* x) { x[0] = 0; }\n',
    'ms_deform_attn': 'template <typename T> __global__ void ms_deformable_im2col_gpu_kernel(T* x) { x[0] = 2; }\n'
                      'template __global__ void ms_deformable_im2col_gpu_kernel<float>(float*);\n',
}


def compiled_extension(tmp_path, ops=tuple(KERNELS)) -> bytes:
    """A real shared object with sm_90 device code for the kernels of ``ops``, built by nvcc."""
    source = tmp_path / 'kernels.cu'
    source.write_text(''.join(KERNELS[op] for op in ops))
    out = tmp_path / 'ext.so'
    subprocess.run([shutil.which('nvcc') or os.path.join(os.environ['CUDA_HOME'], 'bin', 'nvcc'), '-shared',
                    '-Xcompiler', '-fPIC', '-gencode', 'arch=compute_90,code=sm_90', str(source), '-o', str(out)],
                   check=True, capture_output=True, timeout=300)
    return out.read_bytes()


def fake_wheel(path, cuda: bool, extension: bytes = None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    body = extension or b'\x7fELF...' + (b'.nv_fatbin\x00__cudaRegisterFatBinary' if cuda else b'.text\x00.data')
    with zipfile.ZipFile(path, 'w') as wheel:
        wheel.writestr('mmcv/_ext.cpython-311-x86_64-linux-gnu.so', body)
        wheel.writestr('mmcv/__init__.py', '')
    return str(path)


def install(cache, **env):
    run_env = dict(os.environ, VITDENSE_BUILD_ONLY='1', VITDENSE_CACHE=str(cache), PYTHON=sys.executable)
    run_env.pop('VITDENSE_CUDA', None)
    run_env.pop('TORCH_CUDA_ARCH_LIST', None)
    run_env.update(env)
    return subprocess.run(['bash', INSTALL], env=run_env, capture_output=True, text=True, timeout=300)


def test_old_cpu_cache_is_reused_under_the_cpu_key(tmp_path):
    old = fake_wheel(tmp_path / OLD_KEY / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl', cuda=False)
    run = install(tmp_path, VITDENSE_CUDA='0')
    assert run.returncode == 0, run.stderr[-2000:]
    new = tmp_path / f'mmcv-2.1.0-torch{TORCH}-cpu' / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl'
    assert '[install] mmcv ops flavour: CPU only (VITDENSE_CUDA=0)' in run.stdout
    assert f'reusing the CPU-only mmcv wheel from the old cache folder {tmp_path / OLD_KEY}' in run.stderr
    assert run.stdout.strip().splitlines()[-1] == f'[install] wheel: {new} (4.0K, cpu ops)'
    assert new.read_bytes() == open(old, 'rb').read()


@NEEDS_NVCC
@NEEDS_CUOBJDUMP
def test_cuda_key_names_arch_list_and_skips_a_cpu_wheel(tmp_path):
    key = tmp_path / f'mmcv-2.1.0-torch{TORCH}-cuda{torch.version.cuda}-sm80.86.89.90'
    fake_wheel(key / 'mmcv-2.1.0-0-cp311-cp311-linux_x86_64.whl', cuda=False)  # first in glob order
    cuda = fake_wheel(key / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl', cuda=True,
                      extension=compiled_extension(tmp_path))
    # a CPU wheel under the old key is not taken for a CUDA build
    fake_wheel(tmp_path / OLD_KEY / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl', cuda=False)
    run = install(tmp_path, VITDENSE_CUDA='1', TORCH_CUDA_ARCH_LIST='8.0;8.6;8.9;9.0')
    assert run.returncode == 0, run.stderr[-2000:]
    assert f'[install] mmcv ops flavour: CUDA {torch.version.cuda} for 8.0;8.6;8.9;9.0 (VITDENSE_CUDA=1)' \
        in run.stdout
    assert 'mmcv-2.1.0-0-cp311-cp311-linux_x86_64.whl: its ops are not cuda' in run.stderr
    size = subprocess.run(['du', '-h', cuda], capture_output=True, text=True).stdout.split()[0]
    assert run.stdout.strip().splitlines()[-2:] == [
        f'[install] wheel: {cuda} ({size}, cuda ops)',
        '[install] sm_90: 3 kernels; RoIAlign 1, nms 1, MultiScaleDeformableAttention 1']


@NEEDS_NVCC
@NEEDS_CUOBJDUMP
def test_cuda_wheel_without_an_ops_kernels_is_refused_in_one_line(tmp_path):
    key = tmp_path / f'mmcv-2.1.0-torch{TORCH}-cuda{torch.version.cuda}-sm90'
    wheel = fake_wheel(key / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl', cuda=True,
                       extension=compiled_extension(tmp_path, ops=('roi_align', 'nms')))
    run = install(tmp_path, VITDENSE_CUDA='1', TORCH_CUDA_ARCH_LIST='9.0')
    assert run.returncode == 2
    assert run.stdout.strip().splitlines()[-1] == \
        '[install] sm_90: 2 kernels; RoIAlign 1, nms 1, MultiScaleDeformableAttention 0'
    assert run.stderr.strip().splitlines()[-1] == \
        f'[install] error: the mmcv wheel {wheel} has no device kernels for MultiScaleDeformableAttention (sm_90)'
    # a wheel whose device section cannot be read: one line too, saying what to do
    os.remove(wheel)
    broken = fake_wheel(key / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl', cuda=True)
    run = install(tmp_path, VITDENSE_CUDA='1', TORCH_CUDA_ARCH_LIST='9.0')
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith('[install] error: ') and f'cannot read the device code of {broken}: ' in last
    assert last.endswith('; delete the wheel and run the install again')


def test_bad_switch_and_missing_nvcc_one_line(tmp_path):
    run = install(tmp_path, VITDENSE_CUDA='yes')
    assert (run.returncode, run.stderr.strip().splitlines()) == (2, [
        "[install] error: VITDENSE_CUDA must be 1 (build mmcv's CUDA ops), 0 (CPU ops only) or unset (decide by "
        "toolkit and GPU), got 'yes'"])
    run = install(tmp_path, VITDENSE_CUDA='1', PATH='/usr/bin:/bin', CUDA_HOME='')
    assert (run.returncode, run.stderr.strip().splitlines()) == (2, [
        f'[install] error: VITDENSE_CUDA=1 but no nvcc found; install the CUDA {torch.version.cuda} toolkit and '
        'set CUDA_HOME (or put nvcc on PATH)'])
    cpu = fake_wheel(tmp_path / f'mmcv-2.1.0-torch{TORCH}-cpu' / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl', False)
    run = install(tmp_path, PATH='/usr/bin:/bin', CUDA_HOME='')  # auto
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == f'[install] wheel: {cpu} (4.0K, cpu ops)'
    assert '[install] mmcv ops flavour: CPU only (no nvcc found (CUDA_HOME / PATH))' in run.stdout
