import os
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

ODD_SIZES = [(32, 32), (50, 68), (97, 131), (224, 320)]


def pytest_configure(config):
    config.addinivalue_line('markers', 'e2e: the one end-to-end training + evaluation run kept per head family '
                                       'when slow tests are deselected')


def randomize(state_dict, seed=0, scale=0.05):
    """A random state dict with the same keys/shapes: what parity tests load into both implementations."""
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=g) * scale if v.dtype.is_floating_point else v.clone())
            for k, v in state_dict.items()}


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def expected_shapes(h, w, channels):
    return [(c, -(-h // s), -(-w // s)) for c, s in zip(channels, (4, 8, 16, 32))]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _release_memory():
    """Hand freed model memory back to the OS after each test: the suite builds some 250 models of different
    sizes, and glibc keeps the freed blocks of each in its arenas, which grew one process past 24 GB."""
    yield
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except OSError:  # not glibc
        pass


@pytest.fixture(autouse=True, scope='session')
def _read_package_model_index_once():
    """mmengine re-reads every metafile of a package's model index (some 300 YAML files) each time a config
    names an ``mmdet::`` / ``mmseg::`` base, about a second per config load; the index does not change during a
    session, so each (package, config) answer is kept, the ValueError for a base config included."""
    import copy
    from mmengine.config import utils
    original, answers = utils._get_cfg_metainfo, {}

    def answer_once(package_path, cfg_path):
        key = (package_path, cfg_path)
        if key not in answers:
            try:
                answers[key] = original(package_path, cfg_path)
            except ValueError as err:  # kept without its traceback, whose frames would keep each test's locals
                answers[key] = ValueError(*err.args)
        if isinstance(answers[key], ValueError):
            raise ValueError(*answers[key].args)  # a fresh one: a raised exception keeps the raising frames
        return copy.deepcopy(answers[key])

    utils._get_cfg_metainfo = answer_once
    yield
    utils._get_cfg_metainfo = original


# ---- one training step of a detector / segmentor from a config ---------------------------------------------
def build_model(cfg):
    """The config's model, built in its default scope's registry (vitdense's one builder), in training mode."""
    from vitdense.runtime.config import build_model as build
    model = build(cfg)
    model.train()  # (not chained: some train() overrides return None)
    return model


def det_batch(model, hw=(96, 128)):
    """A preprocessed Mask R-CNN batch: one image of ``hw`` with two random boxes and masks (mmdet's demo)."""
    from mmdet.testing import demo_mm_inputs
    packed = demo_mm_inputs(batch_size=1, image_shapes=[(3, *hw)], num_items=[2], num_classes=80, with_mask=True)
    return model.data_preprocessor(packed, True)


def seg_batch(model, hw=(96, 128), batch_size=2):
    """A preprocessed segmentation batch of random images and ADE20K-range labels; 2 images by default because
    UperNet's pooled 1x1 BatchNorm needs more than one value per channel."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(batch_size):
        sample = SegDataSample(metainfo=dict(img_shape=hw, ori_shape=hw, pad_shape=hw))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, *hw)))
        samples.append(sample)
    inputs = [torch.randint(0, 255, (3, *hw), dtype=torch.uint8) for _ in range(batch_size)]
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)


def training_step(model, optim_wrapper_cfg, data, watched):
    """One step through the configured optim wrapper: the loss is finite and positive, and every ``watched``
    parameter moved (its gradient arrived and the step applied it)."""
    from mmengine.optim import build_optim_wrapper
    model.train()
    wrapper = build_optim_wrapper(model, optim_wrapper_cfg)
    before = [p.detach().clone() for p in watched]
    total, _ = model.parse_losses(model(**data, mode='loss'))
    assert torch.isfinite(total) and total > 0
    wrapper.update_params(total)
    for p, b in zip(watched, before):
        assert not torch.equal(p, b)
    return total


# ---- a classifier config's backbone, loaded through init_cfg ---------------------------------------------------
def config_backbone(config, checkpoint=None, **overrides):
    """The ``model.backbone`` of ``configs/CONFIG`` as the config builds it (eval mode), ``overrides`` applied,
    its weights loaded through ``init_cfg=dict(type='Pretrained', checkpoint=checkpoint)`` when given."""
    from mmengine.config import Config
    from vitdense.registry import MODELS
    bb = Config.fromfile(os.path.join(REPO, 'configs', config)).model.backbone.to_dict()
    bb.update(overrides)
    if checkpoint is not None:
        bb['init_cfg'] = dict(type='Pretrained', checkpoint=str(checkpoint))
    model = MODELS.build(bb)
    model.init_weights()
    return model.eval()


def saved_random_timm(name, path, seed=0, **kwargs):
    """timm model ``name`` (eval mode) holding a random state dict, that state dict saved to ``path``."""
    import timm
    ref = timm.create_model(name, **kwargs).eval()
    ref.load_state_dict(randomize(ref.state_dict(), seed=seed))
    torch.save(ref.state_dict(), path)
    return ref
