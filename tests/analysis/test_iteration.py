"""vitdense.analysis.iteration: mmdet's own Swin-T Mask R-CNN config as the reference of the main job's, same weights."""
import os

import pytest
import torch

from tests.conftest import REPO
from vitdense.analysis import iteration as benchmarking
from vitdense.runtime.config import load_config
from vitdense.errors import UserError

DET_MINI = os.path.join(REPO, 'configs/swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py')


def test_reference_config_is_mmdets_own_on_the_mini_data():
    cfg = load_config(DET_MINI)
    ref = benchmarking.reference_config(cfg, benchmarking.REFERENCE_CONFIGS['mask-rcnn_swin-t-p4-w7_fpn_mini-coco'])
    assert ref.model.backbone.type == 'SwinTransformer' and ref.model.backbone.init_cfg is None
    assert ref.model.roi_head.bbox_roi_extractor.roi_layer.type == 'RoIAlign'  # mmcv's
    assert ref.train_dataloader == cfg.train_dataloader
    assert ref.optim_wrapper.optimizer.lr == cfg.optim_wrapper.optimizer.lr == 3e-4
    assert 'constructor' not in ref.optim_wrapper
    with pytest.raises(UserError, match='no such config'):
        benchmarking.openmmlab_config_path('mmdet::swin/no-such-config.py')


def test_copied_weights_give_mmdets_features():
    cfg = load_config(DET_MINI)
    ref_cfg = benchmarking.reference_config(cfg, benchmarking.REFERENCE_CONFIGS['mask-rcnn_swin-t-p4-w7_fpn_mini-coco'])
    benchmarking.seed_everything(0)
    reference, _ = benchmarking.build_trainer(ref_cfg)
    benchmarking.seed_everything(1)
    ours, _ = benchmarking.build_trainer(cfg)
    x = torch.randn(1, 3, 96, 128)
    reference.eval(), ours.eval()
    with torch.no_grad():
        before = ours.extract_feat(x)
        benchmarking.copy_weights(reference, ours)
        expected, got = reference.extract_feat(x), ours.extract_feat(x)
    assert not torch.allclose(before[0], expected[0], atol=1e-3)  # different weights before the copy
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_same_weights_same_predictions_as_mmdets_config():
    """What --test --compare times is the same computation on both sides: mmdet's config (mmdet's Swin, mmcv's
    RoIAlign) and vitdense's, holding the same weights, predict the same boxes, scores and masks."""
    cfg = load_config(DET_MINI)
    ref_cfg = benchmarking.reference_config(cfg, benchmarking.REFERENCE_CONFIGS['mask-rcnn_swin-t-p4-w7_fpn_mini-coco'])
    benchmarking.seed_everything(0)
    reference, _ = benchmarking.build_trainer(ref_cfg)
    ours, _ = benchmarking.build_trainer(cfg)
    benchmarking.copy_weights(reference, ours)
    reference.eval(), ours.eval()
    batch = benchmarking.first_batches(cfg, 1, 'test')[0]
    with torch.no_grad():
        expected = reference.test_step(dict(batch))[0].pred_instances
        got = ours.test_step(dict(batch))[0].pred_instances
    assert len(expected) > 10  # random weights still keep many detections above the score threshold
    torch.testing.assert_close(got.scores, expected.scores, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.bboxes, expected.bboxes, rtol=1e-4, atol=1e-3)
    assert torch.equal(got.labels, expected.labels)
    assert (got.masks != expected.masks).float().mean() < 1e-3  # binarised at 0.5: a pixel may flip at the edge
    times = benchmarking.time_test_steps({'mmdet': reference, 'vitdense': ours}, [batch], repeats=2, warmup=0)
    assert [len(t.wall) for t in times.values()] == [2, 2] and all(w > 0 for t in times.values() for w in t.wall)
