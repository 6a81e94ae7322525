"""vitdense.RoIAlign against mmcv's compiled RoIAlign: outputs and gradients on random RoIs."""
import pytest
import torch

from vitdense.errors import ConfigError
from vitdense.models.roi_align import RoIAlign, roi_align

mmcv_ops = pytest.importorskip('mmcv.ops')


def random_rois(num, batch, height, width, stride, generator):
    """RoIs of very different sizes (sub-pixel to larger than the map), some partly or wholly outside it."""
    centre = torch.rand(num, 2, generator=generator) * torch.tensor([width * stride, height * stride]) * 1.2 - 5
    size = torch.rand(num, 2, generator=generator) ** 2 * 40 * stride + 0.1
    index = torch.randint(0, batch, (num, 1), generator=generator).float()
    return torch.cat([index, centre - size / 2, centre + size / 2], 1)


@pytest.mark.parametrize('output_size,sampling_ratio,aligned', [
    (7, 0, True), (14, 0, True), ((7, 5), 0, True), (7, 2, True), (7, 0, False), (6, 3, False)])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_matches_mmcv_forward_and_backward(output_size, sampling_ratio, aligned, dtype):
    gen = torch.Generator().manual_seed(0)
    batch, channels, height, width, stride = 2, 5, 13, 19, 4
    features = torch.randn(batch, channels, height, width, generator=gen, dtype=dtype, requires_grad=True)
    rois = random_rois(60, batch, height, width, stride, gen).to(dtype)
    reference = mmcv_ops.RoIAlign(output_size, 1 / stride, sampling_ratio, aligned=aligned)(features, rois)
    ours = RoIAlign(output_size, 1 / stride, sampling_ratio, aligned=aligned)(features, rois)
    assert ours.shape == reference.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert reference.abs().max() > 0.5  # the RoIs do pool real values
    torch.testing.assert_close(ours, reference, rtol=tol, atol=tol)
    upstream = torch.randn(reference.shape, generator=gen, dtype=dtype)
    grad_ref, = torch.autograd.grad(reference, features, upstream)
    grad_ours, = torch.autograd.grad(ours, features, upstream)
    assert grad_ref.abs().max() > 0.5
    torch.testing.assert_close(grad_ours, grad_ref, rtol=tol, atol=tol)


def test_no_rois_and_rois_get_no_gradient():
    features = torch.randn(1, 3, 8, 8, requires_grad=True)
    assert roi_align(features, torch.zeros(0, 5), 7).shape == (0, 3, 7, 7)
    rois = torch.tensor([[0.0, 1.0, 1.0, 6.0, 5.0]], requires_grad=True)
    roi_align(features, rois, 2).sum().backward()
    assert rois.grad is None and features.grad.abs().sum() > 0


def test_bad_config_values_raise_config_errors():
    with pytest.raises(ConfigError, match="pool_mode='avg'"):
        RoIAlign(7, pool_mode='max')
    with pytest.raises(ConfigError, match='sampling_ratio'):
        RoIAlign(7, sampling_ratio=-1)


def test_mmdet_extractor_built_by_name_pools_like_mmcv():
    pytest.importorskip('mmdet')
    from mmengine.registry import MODELS
    import vitdense.models  # noqa: F401
    cfg = dict(out_channels=4, featmap_strides=[4, 8, 16, 32])
    ours = MODELS.build(dict(cfg, type='vitdense.SingleRoIExtractor',
                             roi_layer=dict(type='vitdense.RoIAlign', output_size=7, sampling_ratio=0)))
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    reference = SingleRoIExtractor(roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0), **cfg)
    assert all(isinstance(layer, RoIAlign) for layer in ours.roi_layers)
    assert [layer.spatial_scale for layer in ours.roi_layers] == [0.25, 0.125, 0.0625, 0.03125]
    gen = torch.Generator().manual_seed(1)
    feats = tuple(torch.randn(2, 4, 64 // s, 96 // s, generator=gen) for s in (4, 8, 16, 32))
    rois = random_rois(80, 2, 16, 24, 4, gen)
    torch.testing.assert_close(ours(feats, rois), reference(feats, rois), rtol=1e-5, atol=1e-5)
