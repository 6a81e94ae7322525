"""Start-up check that mmcv's compiled ops can run on the device the model is placed on.

mmcv's ``_ext`` holds CPU kernels only unless it was built with CUDA (``tools/install.sh`` builds the CUDA
kernels where a matching toolkit and a GPU are present, or with ``VITDENSE_CUDA=1``). A CPU-only build under a
model on CUDA fails deep in mmcv's C++ dispatch at the first RoIAlign / nms / deformable attention call, with
no hint of the cause; :func:`check_mmcv_ops_for_device` turns that into one line before anything is built.
"""
from typing import Optional, Union

import torch

from vitdense.errors import UserError

CUDA_INSTALL_COMMAND = 'VITDENSE_CUDA=1 bash tools/install.sh'


def mmcv_ops_cuda_version() -> Optional[str]:
    """The CUDA version mmcv's ops were compiled with, or None when they carry no CUDA kernels."""
    from mmcv.ops import get_compiling_cuda_version
    version = get_compiling_cuda_version()
    return None if version == 'not available' else version


def default_device() -> str:
    """The device mmengine's runner (and the inferencers, without ``--device``) put the model on."""
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def check_mmcv_ops_for_device(device: Union[str, torch.device, None] = None) -> None:
    """Raise a one-line :class:`UserError` when ``device`` (default: :func:`default_device`) is a CUDA device
    and mmcv's ops were compiled without CUDA.

    The check runs for every model, including those that call no mmcv op (e.g. UperNet): vitdense's choice,
    because such an install breaks at the first evaluation's nms or RoIAlign rather than at start-up, and the
    fix is one install command.
    """
    device = torch.device(default_device() if device is None else device)
    if device.type != 'cuda' or mmcv_ops_cuda_version() is not None:
        return
    import mmcv
    raise UserError(f"the model runs on {device.type} but mmcv {mmcv.__version__}'s ops were compiled without CUDA "
                    f'(RoIAlign, nms and deformable attention would fail inside mmcv); rebuild them with: '
                    f'{CUDA_INSTALL_COMMAND}')
