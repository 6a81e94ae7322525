"""The user-facing tools on tiny cases, with their outputs checked for values.

get_flops / model_zoo (numbers against an independent count and the published figures), benchmark (a ratio
printed from the measured numbers), demo (pictures of the input's size, changed where a box is drawn),
browse_dataset (ground truth drawn inside the annotated boxes / labelled pixels), analyze_logs (a PNG and
the values from a synthetic log), every option documented in --help, and the TensorBoard config line.
"""
import importlib.util
import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from vitdense.errors import UserError
from vitdense.runtime.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = ['get_flops', 'model_zoo', 'benchmark', 'demo', 'browse_dataset', 'analyze_logs']
DET_MINI = os.path.join(REPO, 'configs/swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py')
SEG_MINI = os.path.join(REPO, 'configs/convnext/upernet_convnext-t_mini-ade20k.py')
COCO_MINI = os.path.join(REPO, 'data/mini/coco_val2017_mini')
ADE_MINI = os.path.join(REPO, 'data/mini/ade20k_mini/ADEChallengeData2016')


def tool(name):
    spec = importlib.util.spec_from_file_location(f'vitdense_tool_{name}', os.path.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rgb(path):
    return np.asarray(Image.open(path).convert('RGB'), dtype=np.float32)


@pytest.mark.parametrize('name', TOOLS)
def test_help_explains_every_option(name, capsys):
    module = tool(name)
    parser = module.build_parser()
    for action in parser._actions:
        assert action.help and len(action.help) > 10, f'{name}: {action.option_strings or action.dest} has no help'
    with pytest.raises(SystemExit) as exit_info:
        module.main(['--help'])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in parser._actions:
        for option in action.option_strings:
            assert option in text


def test_get_flops_equals_an_independent_count(capsys):
    """ConvNeXt-T (vitdense) at 224 vs timm's convnext_tiny features counted by torch's plain counter."""
    import timm
    from torch.utils.flop_counter import FlopCounterMode
    result = tool('get_flops').main([SEG_MINI, '--backbone-only', '--shape', '224', '--depth', '1'])
    reference = timm.create_model('convnext_tiny', pretrained=False, features_only=True).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        reference(torch.zeros(1, 3, 224, 224))
    assert result.flops == counter.get_total_flops() // 2  # torch counts 2 per multiply-add
    assert result.params == 27_821_472
    out = capsys.readouterr().out
    assert re.search(r'params:\s+27\.82 M', out) and re.search(r'FLOPs:\s+4\.45 G', out)
    assert 'ConvNeXt.stem' in out

    result = tool('get_flops').main([SEG_MINI, '--shape', '256', '320', '--depth', '0'])  # full UperNet
    assert result.shape == (256, 320) and result.flops > 4 * counter.get_total_flops() // 2
    with pytest.raises(UserError, match='--shape takes 1 or 2 numbers'):
        tool('get_flops').main([SEG_MINI, '--shape', '1', '2', '3'])


def test_model_zoo_rows_and_any_new_config(tmp_path, capsys):
    out = tmp_path / 'zoo.md'
    rows = tool('model_zoo').main(['--pattern', 'upernet_convnext', '--params-only', '--out', str(out),
                                   '--no-progress'])
    by_name = {r['name']: r for r in rows}
    assert set(by_name) == {f'upernet_convnext-{s}_4xb4-160k_ade20k-512x512' for s in 'tsb'}  # mini skipped
    text = out.read_text()
    for name, row in by_name.items():
        published = row['published'].params_m
        assert abs(row['params_m'] - published) / published < 0.02
        line = next(line for line in text.splitlines() if f'[{name}]' in line)
        assert f"| {row['params_m']:.1f} | {published:g} |" in line and '512x2048' in line

    # a config written later, anywhere: inherits Swin-T UperNet, switches to Swin-S -> Swin-S's numbers
    (tmp_path / 'configs').mkdir()
    (tmp_path / 'configs' / 'upernet_custom.py').write_text(
        f"_base_ = '{REPO}/configs/swin/upernet_swin-t-p4-w7_4xb4-160k_ade20k-512x512.py'\n"
        "model = dict(backbone=dict(arch='small'))\n")
    rows = tool('model_zoo').main(['--configs', str(tmp_path / 'configs'), '--no-progress'])
    # 1028.6 GFLOPs: Swin's projections skip the window padding (1037 with it, as mmseg computes; published 1038)
    assert len(rows) == 1 and abs(rows[0]['params_m'] - 81.3) < 0.1 and abs(rows[0]['gflops'] - 1028.6) < 0.5
    line = next(line for line in capsys.readouterr().out.splitlines() if '[upernet_custom](' in line)
    assert '| seg | UPerHead | SwinTransformer-small | 512x2048 | 81.3 |' in line


def test_benchmark_prints_the_measured_ratio(capsys):
    results = tool('benchmark').main([DET_MINI, '--backbone-only', '--shape', '96', '--compare', '--warmup', '1',
                                      '--repeats', '2', '--threads', '1', '--no-progress'])
    ours, mmdet_swin, timm_swin = results.values()
    assert ours.name == 'vitdense SwinTransformer' and 'mmdet' in mmdet_swin.name and 'timm' in timm_swin.name
    for r in (ours, mmdet_swin, timm_swin):
        assert len(r.times) == 2 and r.images_per_s == pytest.approx(1 / r.median_s) and r.peak_mem >= 0
    out = capsys.readouterr().out
    for reference in (mmdet_swin, timm_swin):
        line = next(line for line in out.splitlines() if line.startswith(f'vitdense / {reference.name}:'))
        ratio, minima = map(float, re.search(r'throughput ([\d.]+)x \(minima ([\d.]+)x\)', line).groups())
        assert ratio == pytest.approx(ours.images_per_s / reference.images_per_s, abs=0.006)
        assert minima == pytest.approx(min(reference.times) / min(ours.times), abs=0.006)

    # the backbone's training step: forward + backward, gradients really computed
    results = tool('benchmark').main([DET_MINI, '--backbone-only', '--train', '--shape', '64', '--compare',
                                      '--warmup', '0', '--repeats', '1', '--threads', '1', '--no-progress'])
    assert len(results) == 3
    assert 'backbone training step (forward + backward)' in capsys.readouterr().out

    # --amp bf16: every implementation in bfloat16, each reference also as users run it by default (float32)
    results = tool('benchmark').main([DET_MINI, '--backbone-only', '--amp', 'bf16', '--shape', '64', '--compare',
                                      '--warmup', '0', '--repeats', '1', '--threads', '1', '--no-progress'])
    assert [label.split(' ', 1)[0] + label[label.rindex(' '):] for label in results] == [
        'vitdense (bf16)', "mmdet's (bf16)", "mmdet's (fp32)", "timm's (bf16)", "timm's (fp32)"]
    assert len(re.findall(r'^vitdense / ', capsys.readouterr().out, re.M)) == 4

    # full model (predict mode), timm's ConvNeXt swapped into a copy of the UperNet
    results = tool('benchmark').main([SEG_MINI, '--shape', '64', '96', '--compare', '--warmup', '0',
                                      '--repeats', '1', '--threads', '1', '--no-progress'])
    assert [r.name for r in results.values()] == ['EncoderDecoder + vitdense ConvNeXt',
                                                   "EncoderDecoder + timm's ConvNeXt (features_only)",
                                                   "EncoderDecoder + mmpretrain's ConvNeXt (mmdet's ConvNeXt "
                                                   "configs use it)"]
    assert 'peak memory' in capsys.readouterr().out


def _runner_checkpoint(config, path, with_meta=True):
    """What tools/train.py writes (state_dict + meta.dataset_meta), from a freshly initialised model."""
    from vitdense.runtime.config import build_model
    from vitdense.inference import dataset_meta_from_config
    cfg = load_config(config)
    torch.manual_seed(0)
    model = build_model(cfg)
    state = {k: v for k, v in model.state_dict().items()}
    if with_meta:
        torch.save({'state_dict': state, 'meta': {'dataset_meta': dataset_meta_from_config(cfg)}}, path)
    else:
        torch.save(state, path)  # a bare state dict: class names must come from the config
    return path


def test_demo_detection_draws_boxes(tmp_path):
    checkpoint = _runner_checkpoint(DET_MINI, str(tmp_path / 'det.pth'))
    image = os.path.join(COCO_MINI, 'hf39769/000000039769.png')
    written = tool('demo').main([DET_MINI, checkpoint, image, '--out-dir', str(tmp_path / 'out'),
                                 '--score-thr', '0.0', '--no-progress', '--cfg-options',
                                 'model.test_cfg.rcnn.max_per_img=10'])
    (picture, prediction), = written
    assert picture == str(tmp_path / 'out' / '000000039769.png')
    drawn, raw = rgb(picture), rgb(image)
    assert drawn.shape == raw.shape
    assert len(prediction['bboxes']) == 10  # score_thr 0 reached the model's test_cfg: max_per_img boxes
    x1, y1, x2, y2 = (int(round(v)) for v in prediction['bboxes'][0])
    edge = np.abs(drawn[y1:y2 + 1, x1:x1 + 2] - raw[y1:y2 + 1, x1:x1 + 2]).mean()  # the box's left edge
    assert edge > 20

    # mmdet's own inferencer takes the vitdense config path and the checkpoint as they are
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(model=DET_MINI, weights=checkpoint, device='cpu', show_progress=False)
    assert inferencer.model.dataset_meta['classes'][0] == 'person'
    assert set(inferencer(image)['predictions'][0]) >= {'bboxes', 'scores', 'labels'}


def test_demo_segmentation_from_a_bare_state_dict(tmp_path):
    checkpoint = _runner_checkpoint(SEG_MINI, str(tmp_path / 'seg.pth'), with_meta=False)
    images = os.path.join(ADE_MINI, 'images/validation')
    written = tool('demo').main([SEG_MINI, checkpoint, images, '--out-dir', str(tmp_path / 'out'),
                                 '--opacity', '0.6', '--no-progress'])
    (picture, prediction), = written
    drawn, raw = rgb(picture), rgb(os.path.join(images, 'ADE_val_00000001.jpg'))
    assert drawn.shape == raw.shape == (512, 683, 3)
    assert np.abs(drawn - raw).mean() > 10  # the overlay covers every pixel
    labels = np.asarray(prediction)
    assert labels.shape == (512, 683) and labels.max() < 150

    from vitdense.inference import dataset_meta_from_config
    meta = dataset_meta_from_config(load_config(SEG_MINI))
    assert len(meta['classes']) == 150 and meta['classes'][0] == 'wall' and len(meta['palette']) == 150


def test_browse_dataset_draws_evaluation_images_as_tools_test_reads_them(tmp_path):
    """--phase val with the config's own Resize (the annotations, loaded after it, stay at full size): boxes
    and masks are brought to the resized image (this crashed in mmengine's visualizer before); images are
    read by vitdense.LoadImage, so a copy of the mini COCO holding a 12-bit-in-16-bit image stops naming it
    (mmcv's loader would draw it nearly black)."""
    import cv2
    from tests.datasets.test_pipelines import unusual_mini_coco
    from vitdense.datasets.transforms import ImageError
    written = tool('browse_dataset').main([DET_MINI, '--phase', 'val', '--output-dir', str(tmp_path / 'det'),
                                           '--no-progress'])
    assert len(written) == 7
    drawn = rgb(str(tmp_path / 'det' / '000000142238.jpg'))
    raw = rgb(os.path.join(COCO_MINI, 'panopticapi/sample_data/input_images/000000142238.jpg'))
    assert drawn.shape == (342, 512, 3)  # 640x427 fitted into the config's 512x384
    raw = cv2.resize(raw, (512, 342), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    with open(os.path.join(COCO_MINI, 'instances_mini.json')) as f:
        boxes = [a['bbox'] for a in json.load(f)['annotations'] if a['image_id'] == 142238]
    inside = np.zeros(raw.shape[:2], bool)
    for x, y, w, h in boxes:
        x, y, w, h = (v * 0.8 for v in (x, y, w, h))
        inside[int(y):int(y + h) + 1, int(x):int(x + w) + 1] = True
    diff = np.abs(drawn - raw).mean(axis=2)
    assert diff[inside].mean() > 20 and diff[inside].mean() > 5 * diff[~inside].mean()

    root, names, _ = unusual_mini_coco(tmp_path)
    with pytest.raises(ImageError, match=f'{root / names[2]} is a 16-bit image'):
        tool('browse_dataset').main([DET_MINI, '--phase', 'val', '--output-dir', str(tmp_path / 'out'),
                                     '--no-progress', '--cfg-options', f'val_dataloader.dataset.data_root={root}/'])


def test_browse_dataset_draws_ground_truth(tmp_path):
    # keep the original size (Resize to fit 640x480 is a no-op for these images) to compare with the raw file
    written = tool('browse_dataset').main([DET_MINI, '--phase', 'val', '--max-images', '1', '--output-dir',
                                           str(tmp_path / 'det'), '--no-progress', '--cfg-options',
                                           'val_dataloader.dataset.pipeline.1.scale=(640,480)'])
    assert written == [str(tmp_path / 'det' / '000000142238.jpg')]
    drawn = rgb(written[0])
    raw = rgb(os.path.join(COCO_MINI, 'panopticapi/sample_data/input_images/000000142238.jpg'))
    assert drawn.shape == raw.shape
    with open(os.path.join(COCO_MINI, 'instances_mini.json')) as f:
        boxes = [a['bbox'] for a in json.load(f)['annotations'] if a['image_id'] == 142238]
    inside = np.zeros(raw.shape[:2], bool)
    for x, y, w, h in boxes:
        inside[int(y):int(y + h) + 1, int(x):int(x + w) + 1] = True
    diff = np.abs(drawn - raw).mean(axis=2)
    assert diff[inside].mean() > 20 and diff[inside].mean() > 5 * diff[~inside].mean()  # not JPEG noise

    written = tool('browse_dataset').main([SEG_MINI, '--phase', 'val', '--output-dir', str(tmp_path / 'seg'),
                                           '--no-progress', '--cfg-options',
                                           'val_dataloader.dataset.pipeline.1.scale=(2048,512)'])
    drawn = rgb(written[0])
    raw = rgb(os.path.join(ADE_MINI, 'images/validation/ADE_val_00000001.jpg'))
    labels = np.asarray(Image.open(os.path.join(ADE_MINI, 'annotations/validation/ADE_val_00000001.png')))
    assert drawn.shape == raw.shape
    # mmseg's visualizer blends the class colour (alpha 0.8) into labelled pixels (label 0 is 'other')
    from mmseg.datasets import ADE20KDataset
    palette = np.asarray(ADE20KDataset.METAINFO['palette'], dtype=np.float32)
    labelled = labels > 0
    expected = raw[labelled] * 0.2 + palette[labels[labelled] - 1] * 0.8
    assert np.abs(drawn[labelled] - raw[labelled]).mean() > 20
    assert np.abs(drawn[labelled] - expected).mean() < 6  # JPEG noise and the class-name boxes


def test_analyze_logs_plots_a_synthetic_log(tmp_path, capsys):
    run = tmp_path / 'work_dir' / '20250101_000000' / 'vis_data'
    run.mkdir(parents=True)
    lines = [dict(lr=1e-4, loss=2.0 - 0.1 * i, loss_cls=1.0 - 0.05 * i, iter=i * 5, step=i * 5, memory=100)
             for i in range(1, 11)]
    lines.insert(5, {'coco/bbox_mAP': 0.1, 'coco/segm_mAP': 0.08, 'step': 25})
    lines.append({'coco/bbox_mAP': 0.25, 'coco/segm_mAP': 0.2, 'step': 50})
    (run / 'scalars.json').write_text('\n'.join(json.dumps(line) for line in lines) + '\n')
    out = tmp_path / 'curves.png'
    data = tool('analyze_logs').main([str(tmp_path / 'work_dir'), '--keys', 'loss', 'bbox_mAP', '--out', str(out)])
    series = data['20250101_000000']
    steps, losses = series['loss']['loss']
    assert steps == [5 * i for i in range(1, 11)] and losses == pytest.approx([2.0 - 0.1 * i for i in range(1, 11)])
    assert series['bbox_mAP'] == {'coco/bbox_mAP': ([25, 50], [0.1, 0.25])}
    picture = np.asarray(Image.open(out).convert('RGB'))
    assert picture.shape == (640, 800, 3) and picture.std() > 10
    assert 'max 0.2500' in capsys.readouterr().out
    with pytest.raises(UserError, match="'mIoU' is in none of the logs; they have: .*loss_cls"):
        tool('analyze_logs').main([str(run / 'scalars.json'), '--keys', 'mIoU', '--out', str(out)])


def test_tensorboard_line_of_the_runtime_base_works(tmp_path):
    """The commented visualizer line of configs/_base_/default_runtime_det.py, uncommented, logs to TensorBoard."""
    with open(os.path.join(REPO, 'configs/_base_/default_runtime_det.py')) as f:
        line = next(line for line in f if line.startswith('# visualizer = dict(vis_backends='))
    config = tmp_path / 'tensorboard.py'
    config.write_text(f"_base_ = '{DET_MINI}'\n{line[2:]}")
    cfg = load_config(str(config))
    from mmengine.registry import VISUALIZERS, init_default_scope
    init_default_scope('mmdet')
    visualizer = VISUALIZERS.build(dict(cfg.visualizer, name='tensorboard_test', save_dir=str(tmp_path / 'logs')))
    assert type(visualizer).__name__ == 'DetLocalVisualizer'
    visualizer.add_scalars({'loss': 1.5}, step=3)
    visualizer.close()
    files = os.listdir(tmp_path / 'logs' / 'vis_data')
    assert 'scalars.json' in files and any(f.startswith('events.out.tfevents') for f in files)


CLS_MINI = os.path.join(REPO, 'configs/timm/tf-efficientnet-lite0_mini-coco-crops.py')


@pytest.mark.parametrize('config', [DET_MINI, CLS_MINI], ids=['detection', 'classification'])
def test_test_tool_show_dir_writes_pictures(config, tmp_path):
    import subprocess
    import sys
    checkpoint = _runner_checkpoint(config, str(tmp_path / 'model.pth'), with_meta=False)
    work_dir = tmp_path / 'work'
    result = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'test.py'), config, checkpoint,
                             '--work-dir', str(work_dir), '--show-dir', 'pictures',
                             '--cfg-options', 'test_dataloader.dataset.indices=2'],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'metrics: ' in result.stdout
    pictures = sorted(p for p in work_dir.rglob('*') if p.is_file() and p.parent.name == 'pictures')
    assert len(pictures) == 2
    assert rgb(pictures[0]).std() > 10  # an image, not an empty canvas


def test_family_speed_benchmarks_report_ratios():
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, cwd=REPO)
    boat = run('tools/benchmark_boat.py', '--sizes', '64x96', '--repeats', '1', '--threads', '1')
    assert boat.returncode == 0, boat.stderr[-2000:]
    flops = {}
    for layout in ('paper', 'pytorch-boat'):  # both layouts by default, each against the same Swin runs
        line = re.search(rf'64x96 {layout}: BOAT \d+ ms, Swin \d+ ms, ratio \d+\.\d\dx .*; FLOPs [\d.]+ / [\d.]+ G, '
                         r'(\d+\.\d\d)x; FSLA \d+% of BOAT time, clustering \d+%', boat.stdout)
        assert line, boat.stdout
        flops[layout] = float(line.group(1))
    assert flops['paper'] > flops['pytorch-boat'] > 1.0  # FSLA in every block costs more than in shifted ones
    # the compiled path, with the eager backend (inductor would spend minutes compiling BOAT)
    compiled = run('tools/benchmark_boat.py', '--sizes', '64x96', '--repeats', '1', '--threads', '1', '--compile',
                   '--compile-backend', 'eager', '--layout', 'paper')
    assert compiled.returncode == 0, compiled.stderr[-2000:]
    assert 'compiled (eager)' in compiled.stdout
    assert re.search(r'64x96 paper: BOAT \d+ ms, Swin \d+ ms, ratio \d+\.\d\dx', compiled.stdout), compiled.stdout
    seq = run('tools/benchmark_sequencer.py', '--sizes', '64x96', '--repeats', '1', '--threads', '1')
    assert seq.returncode == 0, seq.stderr[-2000:]
    row = re.search(r'\| 64x96 \|.*\| (\d+\.\d)e([+-]\d+) \|$', seq.stdout, re.M)
    assert row and float(f'{row.group(1)}e{row.group(2)}') <= 1e-5, seq.stdout  # same features as timm
