"""The model inside a DDP / FSDP (or any mmengine) model wrapper, written once for the hooks and the tools."""
import torch.nn as nn
from mmengine.model import is_model_wrapper


def unwrap_model(model: nn.Module) -> nn.Module:
    """``model.module`` for a model wrapper mmengine knows (DDP, FSDP, MMDistributedDataParallel ...), else
    ``model``."""
    return model.module if is_model_wrapper(model) else model
