"""vitdense.models.cpu_layers: float32 CPU linears through oneDNN and depthwise convolutions with a faster
backward, the same function as nn.Linear / timm's Mlp / nn.Conv2d."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Mlp as TimmMlp
from torch.profiler import ProfilerActivity, profile

from tests.conftest import rel_err
from vitdense.models.cpu_layers import DepthwiseConv2d, Linear, Mlp, linear, onednn_applies, use_fast_cpu_layers

ONEDNN_OP = 'mkldnn::_linear_pointwise'


def ops_run(fn):
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.name for e in prof.events()}


def float64_reference(x, weight, bias, gelu=False):
    y = F.linear(x.double(), weight.double(), None if bias is None else bias.double())
    return F.gelu(y) if gelu else y


@pytest.mark.parametrize('shape', [(37, 24), (2, 5, 7, 24)], ids=['2d', '4d'])
@pytest.mark.parametrize('with_bias', [True, False], ids=['bias', 'no-bias'])
@pytest.mark.parametrize('gelu', [False, True], ids=['linear', 'gelu'])
def test_linear_matches_float64_in_values_and_gradients(shape, with_bias, gelu):
    torch.manual_seed(0)
    x = torch.randn(*shape)
    weight, bias = torch.randn(40, 24) / 5, torch.randn(40) if with_bias else None
    with torch.no_grad():
        assert rel_err(linear(x, weight, bias, gelu=gelu), float64_reference(x, weight, bias, gelu)) <= 1e-6
    leaves = [t.clone().requires_grad_() for t in (x, weight) + ((bias,) if with_bias else ())]
    out = linear(leaves[0], leaves[1], leaves[2] if with_bias else None, gelu=gelu)
    upstream = torch.randn_like(out)
    (out * upstream).sum().backward()
    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    ref = float64_reference(ref_leaves[0], ref_leaves[1], ref_leaves[2] if with_bias else None, gelu)
    (ref * upstream.double()).sum().backward()
    assert rel_err(out, ref) <= 1e-6
    for ours, theirs in zip(leaves, ref_leaves):
        assert ours.grad.shape == theirs.grad.shape and rel_err(ours.grad, theirs.grad) <= 1e-5


def test_strided_input_and_its_gradient():
    """A permuted (NCHW -> NHWC view) input, as ConvNeXt's blocks pass it, with no copy made first."""
    torch.manual_seed(0)
    x = torch.randn(2, 24, 5, 6).permute(0, 2, 3, 1).requires_grad_()
    layer = Linear(24, 16)
    layer(x).square().sum().backward()
    xd = x.detach().double().requires_grad_()
    ref = F.linear(xd, layer.weight.double(), layer.bias.double())
    ref.square().sum().backward()
    assert rel_err(layer(x), ref) <= 1e-6 and rel_err(x.grad, xd.grad) <= 1e-5


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason='torch built without oneDNN')
def test_float32_cpu_calls_go_through_onednn_and_the_rest_through_f_linear():
    layer = Linear(24, 16)
    x = torch.randn(8, 24)
    assert onednn_applies(x, layer.weight)
    assert ONEDNN_OP in ops_run(lambda: layer(x))
    assert ONEDNN_OP in ops_run(lambda: layer(x.requires_grad_()).sum().backward())
    with torch.autocast('cpu', dtype=torch.bfloat16):  # autocast's own bf16 GEMM
        assert not onednn_applies(x, layer.weight)
        assert ONEDNN_OP not in ops_run(lambda: layer(x))
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    with torch.backends.mkldnn.flags(enabled=False):
        assert ONEDNN_OP not in ops_run(lambda: layer(x))
    double = Linear(24, 16).double()
    xd = x.detach().double()
    assert not onednn_applies(xd, double.weight) and torch.equal(double(xd), F.linear(xd, double.weight, double.bias))
    assert linear(torch.randn(0, 24), layer.weight, layer.bias).shape == (0, 16)


def test_use_fast_cpu_layers_keeps_parameters_names_and_function():
    """Swapped in place below a module (a trunk built by timm): the same parameter objects and state-dict keys,
    the same outputs and gradients as before the swap; an MLP's GELU runs inside fc1 in eval."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(24, 32), nn.Sequential(TimmMlp(32, 64), nn.LayerNorm(32)), nn.Linear(32, 8))
    before = {k: v for k, v in net.named_parameters()}
    keys = list(net.state_dict())
    x = torch.randn(4, 9, 24)
    with torch.no_grad():
        expected = net(x)
    use_fast_cpu_layers(net)
    assert type(net[0]) is Linear and type(net[2]) is Linear and type(net[1][0]) is Mlp
    assert type(net[1][0].fc1) is Linear and type(net[1][1]) is nn.LayerNorm
    assert list(net.state_dict()) == keys
    assert all(p is before[k] for k, p in net.named_parameters())
    assert net[1][0].fused_gelu()
    with torch.no_grad():
        assert rel_err(net(x), expected) <= 1e-6
    with torch.no_grad():  # the eval MLP: one fused oneDNN call for fc1 + GELU, no separate GELU
        ops = ops_run(lambda: net[1][0](torch.randn(4, 9, 32)))
    assert 'aten::gelu' not in ops and ONEDNN_OP in ops


def test_mlp_with_dropout_or_another_activation_is_timms():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 16)
    for kwargs in (dict(act_layer=nn.ReLU), dict(act_layer=lambda: nn.GELU(approximate='tanh')), dict(drop=0.5),
                   dict(use_conv=True)):
        ours, timms = Mlp(16, 32, **kwargs), TimmMlp(16, 32, **kwargs)
        timms.load_state_dict(ours.state_dict())
        ours.train(), timms.train()
        if 'drop' in kwargs or 'use_conv' in kwargs:  # 1x1 convolutions (NCHW) are timm's as they are
            assert not ours.fused_gelu()
            ours.eval(), timms.eval()
        inputs = x.transpose(1, 2)[..., None] if 'use_conv' in kwargs else x
        assert rel_err(ours(inputs), timms(inputs)) <= 1e-6


def test_torch_compile_takes_linear_whole():
    """Under torch.compile the linears are F.linear (the compiler picks its GEMMs): one graph, same values."""
    torch.manual_seed(0)
    mlp = Mlp(16, 32).eval()
    x = torch.randn(4, 16)
    compiled = torch.compile(mlp, fullgraph=True, backend='eager')
    with torch.no_grad():
        assert rel_err(compiled(x), mlp(x)) <= 1e-6


@pytest.mark.parametrize('kernel, shape, layout', [(7, (2, 12, 15, 11), 'nchw'), (3, (1, 8, 9, 9), 'channels_last'),
                                                   (7, (1, 16, 6, 7), 'permuted-nhwc')])
def test_depthwise_conv_backward_matches_float64(kernel, shape, layout):
    """Outputs and the three gradients equal a float64 nn.Conv2d's, whatever the input's memory layout (ConvNeXt's
    blocks hand on NHWC maps viewed as NCHW)."""
    torch.manual_seed(0)
    B, C, H, W = shape
    conv = nn.Conv2d(C, C, kernel, padding=kernel // 2, groups=C)
    fast = use_fast_cpu_layers(nn.Sequential(conv))[0]
    assert type(fast) is DepthwiseConv2d and fast.weight is conv.weight
    x = torch.randn(B, C, H, W)
    if layout == 'channels_last':
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == 'permuted-nhwc':
        x = torch.randn(B, H, W, C).permute(0, 3, 1, 2)
    x.requires_grad_()
    out = fast(x)
    upstream = torch.randn_like(out)
    (out * upstream).sum().backward()
    reference = nn.Conv2d(C, C, kernel, padding=kernel // 2, groups=C).double()
    reference.load_state_dict(conv.state_dict())
    xd = x.detach().double().requires_grad_()
    expected = reference(xd)
    (expected * upstream.double()).sum().backward()
    assert out.shape == expected.shape and rel_err(out, expected) <= 1e-6
    assert rel_err(x.grad, xd.grad) <= 1e-6
    assert rel_err(conv.weight.grad, reference.weight.grad) <= 1e-5
    assert rel_err(conv.bias.grad, reference.bias.grad) <= 1e-5


def test_depthwise_conv_backward_uses_forward_convolutions_only_where_it_applies():
    conv = use_fast_cpu_layers(nn.Sequential(nn.Conv2d(8, 8, 7, padding=3, groups=8)))[0]
    x = torch.randn(1, 8, 10, 10, requires_grad=True)
    ops = ops_run(lambda: conv(x).sum().backward())
    assert 'aten::convolution_backward' not in ops and 'aten::convolution' in ops
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert 'aten::convolution_backward' in ops_run(lambda: conv(x).float().sum().backward())
    # not a 'same' stride-1 depthwise convolution: left as it is
    for other in (nn.Conv2d(8, 8, 7, padding=3), nn.Conv2d(8, 8, 7, padding=2, groups=8),
                  nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.Conv2d(8, 16, 3, padding=1, groups=8)):
        assert type(use_fast_cpu_layers(nn.Sequential(other))[0]) is nn.Conv2d
