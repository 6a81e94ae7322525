"""Layers whose float32 CPU path is faster than torch's default, computing the same function.

* :class:`Linear` / :class:`Mlp`: the GEMMs go through oneDNN instead of torch's default BLAS (MKL). On the AMD
  EPYC machines this project runs on, oneDNN's matmul does the token-major GEMMs of window attention and MLPs
  1.05-1.7x faster (forward and the input gradient; the weight gradient stays with MKL, as fast there). In eval,
  an MLP's first linear also applies its exact GELU inside oneDNN's GEMM (one pass over the hidden activations
  less). ``tools/benchmark_linear.py`` prints the per-shape numbers.
* :class:`DepthwiseConv2d`: torch's CPU backward of a depthwise convolution (ConvNeXt's 7 x 7, CeiT's and
  CSWin's 3 x 3) computes the weight gradient 3-20x slower than a forward convolution of the same size; here the
  weight gradient is that forward convolution (the padded input convolved with the output gradient as its
  kernel, one group per image and channel) and the input gradient the flipped kernel's forward convolution.

Same parameters, same names and the same arithmetic as ``nn.Linear`` / timm's ``Mlp`` / ``nn.Conv2d`` (the sum
order differs, so results agree to float rounding, not bitwise). Everywhere else (a GPU, float64,
bfloat16 / autocast, tracing for export, ``torch.compile``, which picks its own kernels, oneDNN switched off
with ``torch.backends.mkldnn.flags``) they are ``F.linear`` / ``F.conv2d`` and torch's backward exactly. The
choice is made per call: nothing process-wide is switched. :func:`use_fast_cpu_layers` swaps them into a
built model (every backbone family calls it in its constructor).
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Mlp as TimmMlp
from timm.layers.activations import GELU as TimmGELU

_linear_pointwise = torch.ops.mkldnn._linear_pointwise


def _float32_cpu_call(x: torch.Tensor, weight: torch.Tensor) -> bool:
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting():
        return False  # checked first: the graph capture cannot look at the flags below
    return (x.device.type == 'cpu' and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.numel() > 0 and not torch.is_autocast_enabled('cpu'))


def onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`linear` routes this call through oneDNN (a float32 CPU call outside autocast)."""
    return (_float32_cpu_call(x, weight) and x.dim() >= 2 and torch.backends.mkldnn.is_available()
            and torch._C._get_mkldnn_enabled())


class _OneDNNLinearFunction(torch.autograd.Function):
    """y = x W^T + b with oneDNN's forward and input gradient; the weight gradient is one MKL GEMM over all
    tokens (as fast as oneDNN's for these shapes, and no transposed copy of the activations)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _linear_pointwise(x, weight, bias, 'none', [], '')

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        grad_2d = grad.reshape(-1, grad.shape[-1])
        if ctx.needs_input_grad[0]:
            grad_x = _linear_pointwise(grad, weight.t(), None, 'none', [], '')  # strided: no transposed copy
        if ctx.needs_input_grad[1]:
            grad_w = grad_2d.t().mm(x.reshape(-1, x.shape[-1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_2d.sum(0)
        return grad_x, grad_w, grad_b


def _needs_grad(*tensors: Optional[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           gelu: bool = False) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` (then the exact GELU when ``gelu``), through oneDNN where
    :func:`onednn_applies`; the GELU is fused into the GEMM when no gradient is needed."""
    if not onednn_applies(x, weight):
        y = F.linear(x, weight, bias)
        return F.gelu(y) if gelu else y
    if not _needs_grad(x, weight, bias):
        return _linear_pointwise(x, weight, bias, 'gelu' if gelu else 'none', [], 'none' if gelu else '')
    y = _OneDNNLinearFunction.apply(x, weight, bias)
    return F.gelu(y) if gelu else y


class Linear(nn.Linear):
    """``nn.Linear`` whose float32 CPU calls go through oneDNN (see the module doc); same state dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class Mlp(TimmMlp):
    """timm's ``Mlp`` (fc1, act, drop1, norm, fc2, drop2; same names) with both linears through :func:`linear`;
    with the exact GELU and no dropout or norm between, the GELU runs inside fc1's GEMM in eval."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fc1 = as_onednn_linear(self.fc1)
        self.fc2 = as_onednn_linear(self.fc2)

    def fused_gelu(self) -> bool:
        exact_gelu = type(self.act) is TimmGELU or (type(self.act) is nn.GELU and self.act.approximate == 'none')
        return (exact_gelu and isinstance(self.fc1, nn.Linear) and isinstance(self.norm, nn.Identity)
                and (not self.training or self.drop1.p == 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused_gelu():
            x = linear(x, self.fc1.weight, self.fc1.bias, gelu=True)
        else:
            x = self.drop1(self.act(self.fc1(x)))
            x = self.norm(x)
        return self.drop2(self.fc2(x))


class _DepthwiseConv2dFunction(torch.autograd.Function):
    """A stride-1 'same' depthwise convolution whose backward is two forward convolutions (see the module doc)."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None
        return F.conv2d(x, weight, bias, padding=padding, groups=weight.shape[0])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        (ph, pw), channels = ctx.padding, weight.shape[0]
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:  # 'same' padding: the transposed convolution is the flipped kernel's
            grad_x = F.conv2d(grad, weight.flip(-2, -1), padding=(ph, pw), groups=channels)
        if ctx.needs_input_grad[1]:
            B, C, H, W = x.shape
            padded = F.pad(x, (pw, pw, ph, ph)).contiguous().view(1, B * C, H + 2 * ph, W + 2 * pw)
            kernels = grad.contiguous().view(B * C, 1, H, W)
            grad_w = F.conv2d(padded, kernels, groups=B * C).view(B, C, *weight.shape[-2:]).sum(0).unsqueeze(1)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d`` with groups = in = out channels, stride 1 and 'same' zero padding (odd kernel), whose float32
    CPU backward is :class:`_DepthwiseConv2dFunction`'s; same state dict."""

    @staticmethod
    def fits(conv: nn.Module) -> bool:
        """Whether ``conv`` is a convolution this class computes."""
        if type(conv) is not nn.Conv2d:
            return False
        kh, kw = conv.kernel_size
        return (conv.groups == conv.in_channels == conv.out_channels and conv.stride == (1, 1)
                and conv.dilation == (1, 1) and conv.padding_mode == 'zeros' and kh % 2 == 1 and kw % 2 == 1
                and conv.padding == ((kh - 1) // 2, (kw - 1) // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _float32_cpu_call(x, self.weight) and x.dim() == 4 and _needs_grad(x, self.weight, self.bias):
            return _DepthwiseConv2dFunction.apply(x, self.weight, self.bias, self.padding)
        return super().forward(x)


def as_depthwise_conv(module: nn.Module) -> nn.Module:
    """A depthwise ``nn.Conv2d`` that :meth:`DepthwiseConv2d.fits` as a :class:`DepthwiseConv2d` holding the same
    parameter objects (anything else as it is)."""
    if not DepthwiseConv2d.fits(module):
        return module
    fast = DepthwiseConv2d(module.in_channels, module.out_channels, module.kernel_size, padding=module.padding,
                           groups=module.groups, bias=module.bias is not None, device='meta')
    fast.weight, fast.bias = module.weight, module.bias
    fast.train(module.training)
    return fast


def as_onednn_linear(module: nn.Module) -> nn.Module:
    """An ``nn.Linear`` as a :class:`Linear` holding the same parameter objects (anything else as it is)."""
    if type(module) is not nn.Linear:
        return module
    fast = Linear(module.in_features, module.out_features, bias=module.bias is not None, device='meta')
    fast.weight, fast.bias = module.weight, module.bias
    fast.train(module.training)
    return fast


def as_onednn_mlp(module: nn.Module) -> nn.Module:
    """A timm ``Mlp`` as an :class:`Mlp` holding the same submodules and parameters (anything else as it is)."""
    if type(module) is not TimmMlp:
        return module
    mlp = Mlp.__new__(Mlp)
    nn.Module.__init__(mlp)
    for name, child in module.named_children():
        setattr(mlp, name, as_onednn_linear(child))
    mlp.train(module.training)
    return mlp


def use_fast_cpu_layers(module: nn.Module) -> nn.Module:
    """Swap, in place, every plain ``nn.Linear`` below ``module`` for a :class:`Linear`, every timm ``Mlp`` for an
    :class:`Mlp` and every depthwise ``nn.Conv2d`` that fits for a :class:`DepthwiseConv2d`, keeping the parameter
    objects and names (also for trunks built by timm). Returns ``module``."""
    for name, child in list(module.named_children()):
        fast = as_depthwise_conv(as_onednn_linear(as_onednn_mlp(child)))
        if fast is not child:
            setattr(module, name, fast)
        if type(fast) not in (Linear, DepthwiseConv2d):
            use_fast_cpu_layers(fast)
    return module
