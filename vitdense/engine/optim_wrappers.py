"""Mixed-precision training in bfloat16 on any device, the CPU included."""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper

from vitdense.registry import OPTIM_WRAPPERS
from .mixed_precision import autocast_network


@OPTIM_WRAPPERS.register_module()
class BF16AutocastOptimWrapper(OptimWrapper):
    """An ``OptimWrapper`` whose forward passes run the network under ``torch.autocast(dtype=torch.bfloat16)``.

    What ``tools/train.py --amp bf16`` uses, on GPUs and CPUs alike (vitdense's choice): bfloat16 keeps float32's
    exponent range, so gradients do not underflow and there is no loss scaling; parameters, gradients and the
    optimiser state stay float32 (autocast casts per operation). Only the weight-holding parts are autocast
    (:func:`vitdense.engine.mixed_precision.autocast_network`): box coding, NMS, RoI pooling and the losses run
    in float32. mmengine's ``AmpOptimWrapper`` (``--amp fp16``) refuses to be built without a GPU and scales the
    loss for float16.
    """

    cast_dtype = torch.bfloat16

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        with super().optim_context(model), autocast_network(model, self.cast_dtype):
            yield
