"""``vitdense.LoadImage``: mmcv's ``LoadImageFromFile`` that never hands the model a silently wrong image.

What mmcv's loader (``color_type='color'``, OpenCV) does with unusual files, and what this one does instead:

============================  ==========================================  =====================================
file                          mmcv ``LoadImageFromFile``                  ``vitdense.LoadImage``
============================  ==========================================  =====================================
grayscale (8 / 16 bit)        3 equal channels, 8 bit                     the same
RGBA / gray + alpha           alpha dropped, 3 channels                   the same (alpha dropped, no blending)
16-bit RGB using full range   value >> 8                                  value / 257, rounded (same scale)
16-bit with low-range data    nearly black, silently (12-bit data: 0-15)  one-line error naming the file
truncated / corrupt / other   ``AssertionError: failed to load image``    one-line error naming the file
empty (0 bytes)               OpenCV assertion, no file name              one-line error naming the file
============================  ==========================================  =====================================

8-bit files are decoded exactly as mmcv does (the same pixels, EXIF orientation applied); 16-bit PNG and TIFF
files are decoded unchanged and converted here. Every pipeline of vitdense's configs names it, with the same
arguments as mmcv's loader: training pipelines as ``dict(type='vitdense.LoadImage')``, test pipelines as
``dict(type='LoadImageFromFile', _scope_='vitdense')``, its name in vitdense's scope, because mmdet's and mmseg's
inferencers find the file loader of a test pipeline by that name to put their ``InferencerLoader`` (files and
arrays) in its place; built in vitdense's scope, that loader reads files with this one too. No tool swaps loaders:
the config on disk is what runs, in vitdense's tools, mmdet's / mmseg's tools and their inferencers.
"""
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform, LoadImageFromFile
from mmengine import fileio
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

from vitdense.errors import ImageError

TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='vitdense', locations=['vitdense.datasets'])

# a 16-bit image whose brightest value is below this uses at most 12 bits: as 8 bits it would be 0..15
MIN_16BIT_PEAK = 4096


@TRANSFORMS.register_module()
class LoadImage(LoadImageFromFile):
    """Load an image as 3-channel 8-bit BGR (``color_type='color'``); other color types behave as mmcv's."""

    def transform(self, results: dict) -> Optional[dict]:
        if self.color_type != 'color' or self.file_client_args is not None:
            return super().transform(results)
        path = results['img_path']
        data = fileio.get(path, backend_args=self.backend_args)
        if not data:
            raise ImageError(f'{path} is empty (0 bytes); replace or remove it')
        # 8-bit files take mmcv's own path (same pixels, EXIF orientation applied); files that can hold 16 bits
        # are decoded unchanged and converted here, so their range is checked instead of silently shifted
        high_depth = is_16bit_png(data) or data[:4] in (b'II*\x00', b'MM\x00*')
        img = mmcv.imfrombytes(data, flag='unchanged' if high_depth else 'color', backend=self.imdecode_backend
                               if not high_depth else 'cv2')
        if img is None or img.size == 0:
            raise ImageError(f'cannot decode image {path}: the file is truncated, corrupt or not an image; '
                             'replace or remove it')
        if high_depth:
            img = to_bgr8(img, path)
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = results['ori_shape'] = img.shape[:2]
        return results


# mmdet's and mmseg's inferencers find the file loader of a test pipeline by the name 'LoadImageFromFile' and build
# their InferencerLoader in its place: in vitdense's scope that name is this loader, so a test pipeline step
# dict(type='LoadImageFromFile', _scope_='vitdense') is vitdense's loader for datasets and inferencers alike
TRANSFORMS.register_module(name='LoadImageFromFile', module=LoadImage)


@TRANSFORMS.register_module()
class InferencerLoader(BaseTransform):
    """What mmseg's inferencer puts in place of the test pipeline's file loader (``type='InferencerLoader'``, built
    in vitdense's scope): a file path through :class:`LoadImage`, an image array (H x W x 3 BGR) as it is, as
    mmdet's / mmseg's ``InferencerLoader`` take them. mmdet's inferencer names its own (``mmdet.InferencerLoader``),
    which builds its file loader in vitdense's scope and so gets :class:`LoadImage` too."""

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.from_file = LoadImage(**kwargs)

    def transform(self, results) -> dict:
        if isinstance(results, str):
            results = dict(img_path=results)
        elif isinstance(results, np.ndarray):
            results = dict(img=results)
        if 'img' not in results:
            return self.from_file(results)
        img = results['img'].astype(np.float32) if self.from_file.to_float32 else results['img']
        return dict(results, img=img, img_path=None, img_shape=img.shape[:2], ori_shape=img.shape[:2])


def read_image(path: str) -> np.ndarray:
    """One image file as H x W x 3 uint8 BGR, decoded and checked as in training (:class:`LoadImage`)."""
    return LoadImage().transform(dict(img_path=path))['img']


def is_16bit_png(data: bytes) -> bool:
    # PNG signature, then the IHDR chunk: length, type, width, height, bit depth (byte 24)
    return data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 24 and data[24] == 16


def to_bgr8(img: np.ndarray, path: str = '<image>') -> np.ndarray:
    """Any decoded image (H x W, H x W x 1/3/4; uint8 or uint16) -> H x W x 3 uint8 BGR."""
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] == 2:  # gray + alpha
        img = img[..., :1]
    elif img.shape[2] == 4:  # BGRA
        img = img[..., :3]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.shape[2] != 3:
        raise ImageError(f'{path} has {img.shape[2]} channels; expected gray, RGB or RGBA')
    if img.dtype == np.uint16:
        peak = int(img.max())
        if peak < MIN_16BIT_PEAK:
            raise ImageError(f'{path} is a 16-bit image whose brightest value is {peak} of 65535; as 8 bits it '
                             'would be nearly black: rescale it to the 8-bit (or full 16-bit) range first')
        img = np.round(img.astype(np.float32) / 257.0).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f'{path} has {img.dtype} pixels; expected 8- or 16-bit integers')
    return np.ascontiguousarray(img)
