import pytest
from mmengine.registry import init_default_scope

import vitdense.models  # noqa: F401


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_scoped_name_reaches_vitdense_from_both_toolboxes(scope):
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    backbone = registry.build(dict(type='vitdense.ConvNeXt', arch='tiny', drop_path_rate=0.0))
    assert type(backbone).__module__ == 'vitdense.models.backbones.convnext'


def test_typo_lists_available_backbones():
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    with pytest.raises(KeyError) as info:
        MODELS.build(dict(type='vitdense.SwinTransfomer'))
    message = str(info.value)
    assert "'SwinTransfomer' is not a registered vitdense model" in message
    assert 'ConvNeXt' in message and 'SwinTransformer' in message
    assert '\n' not in message


@pytest.mark.parametrize('scope', ['mmengine', 'mmdet', 'mmseg'])
def test_unscoped_name_built_through_vitdense_registry_under_any_default_scope(scope):
    # BOATClassifier builds its backbone by unscoped name; a runner may have set any default scope before.
    init_default_scope(scope)
    from vitdense.models.backbones.boat import BOATClassifier
    from vitdense.registry import MODELS
    arch = dict(embed_dim=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8))
    clf = BOATClassifier(dict(type='BOATSwin', arch=arch, layout='pytorch-boat'), num_classes=3)
    assert type(clf.backbone).__name__ == 'BOATSwin'
    assert type(MODELS.build(dict(type='ConvNeXt', arch='tiny'))).__name__ == 'ConvNeXt'
