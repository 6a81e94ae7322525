import os
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

ODD_SIZES = [(32, 32), (50, 68), (97, 131), (224, 320)]


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
