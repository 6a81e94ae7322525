"""The Python API (vitdense.list_models / get_model / load_config), the model index and the ``vitdense::`` prefix."""
import os
import subprocess
import sys

import pytest
import torch

import vitdense
from vitdense import zoo
from vitdense.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DET_MINI = 'swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco'


def run_python(code, cwd, **env):
    """``code`` in a fresh interpreter that imports this checkout's vitdense, from ``cwd``."""
    environment = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1', **env)
    return subprocess.run([sys.executable, '-c', code], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=600)


def test_import_is_light_and_the_api_loads_on_use(tmp_path):
    result = run_python("import sys, vitdense; print(sorted(m for m in ('torch', 'mmengine', 'mmdet') "
                        "if m in sys.modules)); print(callable(vitdense.get_model), 'torch' in sys.modules)",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split('\n')[:2] == ['[]', 'True False']  # torch comes with the first model


def test_list_models_names_backbones_and_configs():
    swin = vitdense.list_models('swin')
    backbones = [n for n in swin if '/' not in n]
    assert swin[:len(backbones)] == sorted(backbones)  # backbones first, then configs
    assert {'swin-t', 'swin-s', 'swin-b', 'swin-t-p4-w7', DET_MINI} <= set(swin)
    assert all('swin' in name for name in swin)
    mini_det = vitdense.list_models('mask-rcnn_*mini-coco')
    assert len(mini_det) == 11 and all(n.split('/')[1].startswith('mask-rcnn_') and n.endswith('_mini-coco')
                                      for n in mini_det)
    assert len(vitdense.list_models()) == len(zoo.backbones()) + len(zoo.shipped_configs())


def test_backbone_names_map_onto_their_detection_configs():
    names = zoo.backbones()
    assert names['swin-t'] == 'swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco'
    assert names['vit-b-r50'] == 'vit_hybrid/mask-rcnn_vit-b-r50-s16-w14_fpn_1x_coco'
    assert names['tf-efficientnet-lite0'] == 'timm/mask-rcnn_tf-efficientnet-lite0_fpn_mini-coco'
    assert names['sequencer2d-m'] == 'sequencer/mask-rcnn_sequencer2d-m_fpn_1x_coco'
    assert names['vit-adapter-s'] == 'vit_adapter/mask-rcnn_vit-adapter-s_fpn_1x_coco'
    assert set(names.values()) <= set(zoo.shipped_configs())


def test_get_model_swin_t_is_the_tiny_backbone():
    from vitdense.models import SwinTransformer
    model = vitdense.get_model('swin-t')
    assert type(model) is SwinTransformer and not model.training
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 96, 16, 24), (1, 192, 8, 12), (1, 384, 4, 6), (1, 768, 2, 3)]
    # Swin-T: 27.5M parameters (the classifier's 28.3M less its 0.77M head)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(27.52e6, rel=2e-3)


def test_get_model_backbone_loads_pretrained_weights(tmp_path):
    source = vitdense.get_model('convnext-t')
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in source.state_dict().items()}
    path = tmp_path / 'convnext.pth'
    torch.save({'state_dict': state}, path)
    loaded = vitdense.get_model('convnext-t', pretrained=str(path)).state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    fresh = vitdense.get_model('convnext-t').state_dict()
    assert not torch.equal(fresh['stages.0.blocks.0.conv_dw.weight'], state['stages.0.blocks.0.conv_dw.weight'])


@pytest.fixture(scope='module')
def detector():
    return vitdense.get_model(os.path.basename(DET_MINI))


def test_get_model_from_a_config_name_builds_the_detector_and_loads_its_checkpoint(detector, tmp_path):
    assert type(detector).__name__ == 'MaskRCNN'
    assert type(detector.backbone).__name__ == 'SwinTransformer'
    state = {k: v + 1 if v.is_floating_point() else v for k, v in detector.state_dict().items()}
    path = tmp_path / 'iter_60.pth'
    torch.save({'state_dict': state, 'meta': {}}, path)
    loaded = vitdense.get_model(DET_MINI, pretrained=str(path)).state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    # a backbone checkpoint goes into the backbone only
    backbone_state = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    torch.save(backbone_state, tmp_path / 'backbone.pth')
    partly = vitdense.get_model(DET_MINI, pretrained=str(tmp_path / 'backbone.pth')).state_dict()
    assert all(torch.equal(partly[k], state[k]) for k in state if k.startswith('backbone.'))
    assert not torch.equal(partly['neck.fpn_convs.0.conv.weight'], state['neck.fpn_convs.0.conv.weight'])


def test_get_model_refuses_a_checkpoint_of_another_model(tmp_path):
    from vitdense.checkpoint import CheckpointError
    torch.save({'state_dict': {'backbone.stem.weight': torch.zeros(3), 'neck.x': torch.zeros(2)}}, tmp_path / 'x.pth')
    with pytest.raises(CheckpointError, match='does not match the model of this config'):
        vitdense.get_model(DET_MINI, pretrained=str(tmp_path / 'x.pth'))


def test_unknown_names_fail_in_one_line_with_close_matches():
    with pytest.raises(UserError, match=r'config not found: mask-rcnn_swin-t-p4-w7_fpn_mini-coc .*close matches: '
                                        r'swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco'):
        vitdense.get_model('mask-rcnn_swin-t-p4-w7_fpn_mini-coc')


def test_config_names_resolve_in_every_spelling():
    path = os.path.realpath(os.path.join(REPO, 'configs', DET_MINI + '.py'))
    for name in (DET_MINI, DET_MINI + '.py', 'configs/' + DET_MINI + '.py', 'vitdense::' + DET_MINI + '.py',
                 os.path.basename(DET_MINI)):
        assert os.path.realpath(zoo.resolve_config(name)) == path, name
    assert zoo.resolve_config(os.path.join(REPO, 'configs', DET_MINI + '.py')) == os.path.join(
        REPO, 'configs', DET_MINI + '.py')  # a file is taken as given


def test_model_index_lists_every_config_with_counted_numbers(detector):
    entries = zoo.model_index()
    missing, stale = set(zoo.shipped_configs()) - set(entries), set(entries) - set(zoo.shipped_configs())
    assert not missing and not stale, (f'model index out of date (missing {sorted(missing)}, no longer a config: '
                                       f'{sorted(stale)}): python tools/model_index.py --keep-counted')
    for name, entry in entries.items():
        meta = entry['Metadata']
        assert entry['Name'] == os.path.basename(name)
        assert os.path.isfile(os.path.join(zoo.MIM_DIR, entry['Config']))
        assert meta['Parameters (M)'] > 0 and meta['FLOPs (G)'] > 0, name
    # the numbers are the models' own: the mini Swin-T Mask R-CNN counted here, against the published figures
    params = sum(p.numel() for p in detector.parameters()) / 1e6
    assert entries[DET_MINI]['Metadata']['Parameters (M)'] == round(params, 1)
    swin_1x = entries['swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco']
    assert swin_1x['Metadata']['Published Parameters (M)'] == 48
    assert swin_1x['Paper Results'][0]['Metrics'] == {'box AP': 43.7}


USER_CONFIG = """_base_ = 'vitdense::swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py'
optim_wrapper = dict(optimizer=dict(lr=1e-4))
"""


def test_a_user_config_inherits_a_shipped_config_through_the_vitdense_prefix(tmp_path):
    (tmp_path / 'my_config.py').write_text(USER_CONFIG)
    code = ("import os, vitdense\n"
            "from vitdense import zoo\n"
            "cfg = vitdense.load_config('my_config.py')\n"
            "print(cfg.model.type, cfg.model.backbone.type, cfg.optim_wrapper.optimizer.lr)\n"
            "print(zoo.drop_vitdense_scope(cfg._cfg_dict))\n"
            "root = cfg.train_dataloader.dataset.data_root\n"
            "print(os.path.isfile(os.path.join(root, 'instances_mini.json')))\n")
    result = run_python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # no _scope_='vitdense' marks left (with them a vitdense:: classifier config does not build: test_cli)
    assert result.stdout.split('\n')[:3] == ['MaskRCNN vitdense.SwinTransformer 0.0001', '0', 'True']
