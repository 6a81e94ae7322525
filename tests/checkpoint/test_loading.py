import re

import pytest
import timm
import torch

from tests.conftest import randomize
from vitdense.checkpoint import CheckpointError, load_checkpoint_file, load_pretrained
from vitdense.models.backbones import ConvNeXt, SwinTransformer


def official_swin_tiny(seed=0):
    """A random Swin-T state dict in the microsoft/Swin-Transformer release layout (window 7, 224)."""
    sd = randomize(timm.create_model('swin_tiny_patch4_window7_224').state_dict(), seed=seed)
    out = {}
    for k, v in sd.items():
        k = re.sub(r'^layers\.(\d+)\.downsample', lambda m: f'layers.{int(m.group(1)) - 1}.downsample', k)
        out[k.replace('head.fc.', 'head.')] = v
    out['layers.0.blocks.1.attn_mask'] = torch.zeros(64, 49, 49)  # buffers the release carries
    out['layers.0.blocks.0.attn.relative_position_index'] = torch.zeros(49, 49, dtype=torch.long)
    return out


def test_window7_checkpoint_into_window12_backbone(tmp_path):
    sd = official_swin_tiny()
    path = tmp_path / 'swin_tiny_patch4_window7_224.pth'
    torch.save({'model': sd}, path)
    model = SwinTransformer(window_size=12, drop_path_rate=0.0,
                            init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    table = model.layers[2].blocks[3].attn.relative_position_bias_table
    old = sd['layers.2.blocks.3.attn.relative_position_bias_table'].view(13, 13, -1)
    new = table.detach().view(23, 23, -1)
    assert table.shape == (23 * 23, 12)
    # the same relative offsets keep their bias: zero offset and the extreme corners
    assert torch.allclose(new[11, 11], old[6, 6], atol=1e-6)
    assert torch.allclose(new[0, 0], old[0, 0], atol=1e-4)
    assert torch.allclose(new[22, 22], old[12, 12], atol=1e-4)
    # everything else loaded verbatim, patch merging moved to the next stage
    assert torch.equal(model.layers[1].downsample.reduction.weight, sd['layers.0.downsample.reduction.weight'])
    assert torch.equal(model.layers[3].blocks[1].mlp.fc2.weight, sd['layers.3.blocks.1.mlp.fc2.weight'])
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 100, 130))
    assert all(torch.isfinite(o).all() for o in outs)


def test_report_lists_mapped_dropped_missing(tmp_path):
    path = tmp_path / 'swin.pth'
    torch.save({'model': official_swin_tiny()}, path)
    report = load_pretrained(SwinTransformer(), str(path))
    assert len(report.loaded) == 169
    assert sorted(report.missing) == sorted(f'out_norms.{i}.{p}' for i in range(4) for p in ('weight', 'bias'))
    assert not report.dropped  # head, final norm and buffers are recognised and removed by the converter
    assert any('official' in n for n in report.notes)
    assert 'missing 8 backbone tensors' in report.summary()


def test_full_detector_checkpoint_is_recognised(tmp_path):
    backbone = SwinTransformer()
    sd = {f'backbone.{k}': v + 1 for k, v in backbone.state_dict().items()}
    sd['neck.lateral_convs.0.conv.weight'] = torch.zeros(256, 96, 1, 1)
    sd['roi_head.bbox_head.fc_cls.weight'] = torch.zeros(81, 1024)
    path = tmp_path / 'mask_rcnn.pth'
    torch.save({'state_dict': sd, 'meta': {'epoch': 12}}, path)
    target = SwinTransformer()
    report = load_pretrained(target, str(path))
    assert 'full model checkpoint (neck, roi_head)' in report.notes[0]
    assert not report.missing
    assert torch.equal(target.out_norms[0].weight, backbone.out_norms[0].weight + 1)


class RunsCodeWhenUnpickled:
    def __reduce__(self):
        return print, ('this ran while loading a checkpoint',)


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match='checkpoint not found: .*nope.pth'):
        load_checkpoint_file(tmp_path / 'nope.pth')
    text = tmp_path / 'notes.txt'
    text.write_text('not a checkpoint')
    with pytest.raises(CheckpointError, match='is not a readable PyTorch checkpoint'):
        load_checkpoint_file(text)
    truncated = tmp_path / 'truncated.pth'
    torch.save({'w': torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    with pytest.raises(CheckpointError, match='truncated or another format'):
        load_checkpoint_file(truncated)
    evil = tmp_path / 'evil.pth'
    torch.save({'w': torch.zeros(1), 'payload': RunsCodeWhenUnpickled()}, evil)
    with pytest.raises(CheckpointError, match=r'refusing to load .*pickles a (builtins\.)?print object'):
        load_checkpoint_file(evil)
    for err_path in (tmp_path / 'nope.pth', text, evil):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint_file(err_path)
        assert '\n' not in str(info.value)


def test_wrong_family_and_wrong_arch(tmp_path):
    convnext = tmp_path / 'convnext.pth'
    torch.save(ConvNeXt().state_dict(), convnext)
    with pytest.raises(CheckpointError, match=r"only 8 of the .* tensors .* match SwinTransformer.*not a checkpoint of this backbone family"):
        load_pretrained(SwinTransformer(), str(convnext))
    swin_b = tmp_path / 'swin_b.pth'
    torch.save(SwinTransformer(arch='base').state_dict(), swin_b)
    with pytest.raises(CheckpointError, match=r'does not fit SwinTransformer: .* other shapes, e.g. .*check the arch'):
        load_pretrained(SwinTransformer(arch='tiny'), str(swin_b))
