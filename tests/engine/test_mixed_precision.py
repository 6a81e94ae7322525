"""vitdense.engine.mixed_precision: the network parts under bfloat16 autocast, the glue between them in float32.

A whole-model autocast (mmengine's) hands mmcv's CPU NMS bfloat16 boxes, which it refuses, and rounds box
coordinates to 8 significant bits; ``autocast_network`` autocasts the backbone, neck and heads only.
"""
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config

from tests.conftest import build_model, det_batch
from tests.tools.test_resume_and_dist import tiny_config
from vitdense.engine.mixed_precision import autocast_network, network_parts


class ToyDetector(nn.Module):
    """A backbone and a head (network parts) with a matrix product between them (glue)."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(8, 16), nn.GELU())
        self.glue = nn.Parameter(torch.randn(16, 16))
        self.bbox_head = nn.ModuleList([nn.Linear(16, 4), nn.Linear(16, 4)])

    def forward(self, x):
        features = self.backbone(x)
        self.seen = dict(features=features.dtype)
        mixed = features @ self.glue  # autocast would run this matmul in bfloat16
        self.seen['glue'] = mixed.dtype
        return [head(mixed) for head in self.bbox_head]


def test_network_parts_are_the_outermost_named_parts_and_each_stage_of_a_list():
    model = ToyDetector()
    assert network_parts(model) == [model.backbone, model.bbox_head[0], model.bbox_head[1]]
    bare = nn.Linear(2, 2)
    assert network_parts(bare) == [bare]
    headed = nn.Sequential()  # a bare timm-style backbone with a classifier 'head': autocast whole
    headed.add_module('stem', nn.Linear(2, 2))
    headed.add_module('head', nn.Linear(2, 2))
    assert network_parts(headed) == [headed]


def test_mask_rcnn_parts(tmp_path):
    model = build_model(Config.fromfile(tiny_config('det', tmp_path / 'tiny.py')))
    parts = network_parts(model)
    assert parts == [model.backbone, model.neck, model.rpn_head, model.roi_head.bbox_head,
                     model.roi_head.mask_head]  # not the RoI head (sampling, RoI pooling) nor the preprocessor


def test_parts_compute_in_bfloat16_return_float32_and_the_glue_stays_float32():
    torch.manual_seed(0)
    model, x = ToyDetector(), torch.randn(5, 8)
    inner = []
    probe = model.backbone[0].register_forward_hook(lambda m, a, out: inner.append(out.dtype))
    reference = model(x)
    with autocast_network(model, torch.bfloat16):
        outputs = model(x)
    assert inner == [torch.float32, torch.bfloat16]  # the backbone's Linear ran in bfloat16 inside the context
    assert model.seen == dict(features=torch.float32, glue=torch.float32)
    assert [o.dtype for o in outputs] == [torch.float32] * 2
    # bfloat16 arithmetic: close to float32 (8 significant bits), not equal to it
    for out, ref in zip(outputs, reference):
        err = ((out - ref).abs().max() / ref.abs().max()).item()
        assert 1e-4 < err < 5e-2, err
    # the model is left as it was: its own forwards, float32 results bit for bit
    probe.remove()
    assert all('forward' not in m.__dict__ for m in model.modules())
    assert all(torch.equal(a, b) for a, b in zip(model(x), reference))


def test_a_part_that_raises_leaves_autocast_off():
    model = ToyDetector()
    with pytest.raises(RuntimeError):
        with autocast_network(model, torch.bfloat16):
            model(torch.randn(5, 3))  # wrong width: the backbone's Linear raises inside the autocast region
    assert not torch.is_autocast_enabled('cpu')
    assert all('forward' not in m.__dict__ for m in model.modules())


def test_mask_rcnn_bf16_train_step_and_inference_on_cpu(tmp_path):
    """Failed before: the whole-model autocast gave mmcv's CPU NMS bfloat16 proposals ('expected scalar type
    Float but found BFloat16')."""
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(tiny_config('det', tmp_path / 'tiny.py'))
    torch.manual_seed(0)
    model = build_model(cfg)
    data = det_batch(model, hw=(96, 128))
    backbone_dtypes, head_outputs = [], []
    for module in model.backbone.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.register_forward_hook(lambda m, a, out: backbone_dtypes.append(out.dtype))
    model.rpn_head.rpn_cls.register_forward_hook(lambda m, a, out: head_outputs.append(('conv', out.dtype)))
    model.rpn_head.register_forward_hook(lambda m, a, out: head_outputs.append(('head', {t.dtype for t in out[0]})))
    wrapper = build_optim_wrapper(model, dict(cfg.optim_wrapper, type='vitdense.BF16AutocastOptimWrapper'))
    watched = model.roi_head.mask_head.conv_logits.weight
    before = watched.detach().clone()
    with wrapper.optim_context(model):
        total, _ = model.parse_losses(model(**data, mode='loss'))
    assert set(backbone_dtypes) == {torch.bfloat16}
    # the RPN's classifier computes in bfloat16 (one call per pyramid level); the glue gets float32 scores
    assert head_outputs == [('conv', torch.bfloat16)] * 5 + [('head', {torch.float32})]
    assert total.dtype == torch.float32 and torch.isfinite(total) and total > 0
    wrapper.update_params(total)
    assert watched.dtype == torch.float32 and not torch.equal(watched, before)

    model.eval()
    with torch.no_grad():
        reference = model.predict(data['inputs'], data['data_samples'])[0].pred_instances
        with autocast_network(model, torch.bfloat16):
            mixed = model.predict(data['inputs'], data['data_samples'])[0].pred_instances
    assert mixed.bboxes.dtype == mixed.scores.dtype == torch.float32
    assert len(mixed) > 0 and len(reference) > 0


def test_parts_are_found_inside_a_ddp_wrapper():
    """Failed before: under tools/dist_train.sh the model is an MMDistributedDataParallel without a backbone of its
    own, so the whole wrapper was autocast and mmcv's CPU NMS got bfloat16 boxes."""
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel
    from tests.tools.test_resume_and_dist import free_port
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{free_port()}', rank=0, world_size=1)
    try:
        model = ToyDetector()
        wrapped = MMDistributedDataParallel(module=model)
        assert network_parts(wrapped) == network_parts(model) == [model.backbone, *model.bbox_head]
    finally:
        dist.destroy_process_group()
