"""Model complexity and speed, by concern:

* :mod:`~vitdense.analysis.flops`: parameters and FLOPs (multiply-adds) of a config's model, counted on the meta
  device (``tools/get_flops.py``, ``tools/model_zoo.py``, the model index);
* :mod:`~vitdense.analysis.speed`: throughput and peak memory of forward functions (``tools/benchmark*.py``);
* :mod:`~vitdense.analysis.published`: the papers' params / FLOPs the tables compare against;
* :mod:`~vitdense.analysis.references`: reference implementations a backbone is benchmarked against.

:func:`parse_size` is the one parser of an input size on the analysis tools' command lines.
"""
import argparse
from typing import Optional, Sequence, Tuple, Union

from vitdense.errors import UserError


def parse_size(value: Union[str, Sequence[int], None]) -> Optional[Tuple[int, int]]:
    """An input size as (H, W): ``'800x1216'`` (an argparse ``type``: anything else is an ``ArgumentTypeError``),
    or the numbers of ``--shape S`` (square) / ``--shape H W`` (None when not given)."""
    if isinstance(value, str):
        try:
            h, w = (int(v) for v in value.lower().split('x'))
        except ValueError:
            raise argparse.ArgumentTypeError(f"size '{value}' is not HxW, e.g. 800x1216") from None
        return h, w
    if not value:
        return None
    if len(value) not in (1, 2):
        raise UserError(f'--shape takes 1 or 2 numbers (S, or H W), got {len(value)}')
    return int(value[0]), int(value[-1])
