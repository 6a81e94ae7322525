"""vitdense.models.layers: the helpers two or more backbone families share, and only those."""
import ast
import os

import torch

from tests.conftest import REPO
from vitdense.models import layers
from vitdense.models.layers import pad_to_multiple

MODELS_DIR = os.path.join(REPO, 'vitdense', 'models')


def test_pad_to_multiple_pads_bottom_and_right_with_zeros_in_either_layout():
    x = torch.randn(2, 3, 5, 7)
    padded = pad_to_multiple(x, 4)                                        # NCHW, one multiple for H and W
    assert padded.shape == (2, 3, 8, 8)
    assert torch.equal(padded[..., :5, :7], x)
    assert padded[..., 5:, :].abs().sum() == 0 and padded[..., :, 7:].abs().sum() == 0

    nhwc = x.permute(0, 2, 3, 1)
    padded = pad_to_multiple(nhwc, (2, 3), channels_last=True)            # NHWC, one multiple per side
    assert padded.shape == (2, 6, 9, 3)
    assert torch.equal(padded[:, :5, :7], nhwc)
    assert padded[:, 5:].abs().sum() == 0 and padded[:, :, 7:].abs().sum() == 0

    assert pad_to_multiple(x, (5, 7)) is x                                # already fits: no copy
    assert pad_to_multiple(nhwc, 1, channels_last=True) is nhwc
    assert pad_to_multiple(torch.randn(6, 10), 4).shape == (8, 12)        # any leading dims for (..., H, W)


def _layers_imports(path):
    """Names a module imports from vitdense.models.layers (``from ..layers import ...``)."""
    tree = ast.parse(open(path).read())
    return {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and node.module == 'layers' and node.level == 2 for alias in node.names}


def test_every_helper_is_used_by_two_or_more_modules():
    """A helper that only one family uses lives in that family's file (e.g. BOAT's clustering in boat.py)."""
    users = {}
    for folder in ('backbones', 'necks'):
        for name in os.listdir(os.path.join(MODELS_DIR, folder)):
            if name.endswith('.py'):
                for helper in _layers_imports(os.path.join(MODELS_DIR, folder, name)):
                    users.setdefault(helper, []).append(name)
    helpers = {name for name, value in vars(layers).items()
               if callable(value) and getattr(value, '__module__', None) == layers.__name__}
    assert helpers, 'no helpers found'
    for helper in sorted(helpers):
        assert len(users.get(helper, [])) >= 2, f'{helper} is used by {users.get(helper, [])} only'

