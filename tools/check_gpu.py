"""Check vitdense on a GPU in minutes: numerics against the CPU, training, evaluation and speed; one table.

    python tools/check_gpu.py [--out work_dirs/check_gpu.md] [--device cuda:0] [--skip backbones train benchmarks]
                              [--train-iters 20] [--train-configs CONFIG ...]

1. backbones: every backbone family (the backbone of each family's Mask R-CNN mini config; BOAT in both layouts)
   with the same random weights and a 2x3x224x320 input (not a multiple of the window sizes: the padding masks
   of the SDPA calls run; two images: BOAT clusters per image) runs forward + backward on the CPU in fp32 (the
   reference) and on the GPU in fp32 and under autocast in fp16 and bf16. Compared: every output map, the
   input's gradient and all parameter gradients of a fixed random linear loss, as relative L2 errors
   ||gpu - cpu|| / ||cpu||, within TOLERANCES (TF32 is turned off for the fp32 run: it is a precision choice,
   not an error); BOAT's AMP rows only need finite values (see CLUSTERING).
2. train: each Mask R-CNN, Cascade Mask R-CNN, UperNet and Mask2Former mini config trains
   ``--train-iters`` iterations on the GPU and evaluates on its mini validation set; passes when every loss is
   finite and the evaluation gives its metrics. Loss first -> last, the metrics and the peak memory are listed.
3. benchmarks: tools/benchmark.py --compare (Swin-T vs mmdet's, ConvNeXt-T vs timm's; backbone at 800x1216 and
   the whole Mask R-CNN) and tools/benchmark_boat.py (both layouts vs Swin-T), with CUDA peak memory.

The table is printed and written to ``--out`` (Markdown). Exit status: 0 when every check passes, 1 when one
fails; 2 (one line) without a CUDA device or when mmcv's ops lack CUDA kernels.
"""
import argparse
import contextlib
import copy
import glob
import io
import math
import os
import runpy
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from vitdense.errors import UserError  # noqa: E402
from vitdense.runtime.errors import run_tool  # noqa: E402

# relative L2 error allowed against the CPU fp32 reference: (outputs, gradients). fp32 differs only by the
# order of floating-point sums; fp16 / bf16 carry 11 / 8 significant bits through dozens of layers, and the
# weight gradients of a random-sign loss are sums that cancel (CPU autocast, two convolutions: fp16 outputs
# 4.6e-4 / grads 5.5e-4, bf16 3.9e-3 / 1.5e-1). A wrong kernel gives errors of order 1.
TOLERANCES = {'fp32': (1e-4, 1e-3), 'fp16': (1e-2, 5e-2), 'bf16': (5e-2, 3e-1)}
# BOAT groups tokens by sorting cosine-similarity ratios: under fp16 / bf16 some tokens change cluster, so the
# error is not a rounding error (CPU bf16 autocast, BOAT-Swin-T paper: outputs 9e-2, grads 5e-1). Its AMP rows
# pass on finite outputs and gradients and list the error; its fp32 rows use TOLERANCES.
CLUSTERING = ('BOAT',)
DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}
INPUT_SHAPE = (2, 3, 224, 320)
BACKBONES = [  # (name, config whose model.backbone is built, backbone overrides)
    ('Swin-T', 'configs/swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco.py', {}),
    ('ConvNeXt-T', 'configs/convnext/mask-rcnn_convnext-t-p4-w7_fpn_mini-coco.py', {}),
    ('ViT-S (windowed)', 'configs/vit/mask-rcnn_vit-s-p16-w14_fpn_mini-coco.py', {}),
    ('ViT-S R26 hybrid', 'configs/vit_hybrid/mask-rcnn_vit-s-r26-s32_fpn_mini-coco.py', {}),
    ('CeiT-T', 'configs/ceit/mask-rcnn_ceit-t-p16_fpn_mini-coco.py', {}),
    ('Sequencer2D-S', 'configs/sequencer/mask-rcnn_sequencer2d-s_fpn_mini-coco.py', {}),
    ('BOAT-Swin-T paper', 'configs/boat/mask-rcnn_boat-swin-t-p4-w7_fpn_mini-coco.py', {'layout': 'paper'}),
    ('BOAT-Swin-T pytorch-boat', 'configs/boat/mask-rcnn_boat-swin-t-p4-w7_fpn_mini-coco.py',
     {'layout': 'pytorch-boat'}),
    ('BOAT-CSWin-T paper', 'configs/boat/mask-rcnn_boat-cswin-t_fpn_mini-coco.py', {'layout': 'paper'}),
    ('BOAT-CSWin-T pytorch-boat', 'configs/boat/mask-rcnn_boat-cswin-t_fpn_mini-coco.py',
     {'layout': 'pytorch-boat'}),
    ('timm tf_efficientnet_lite0', 'configs/timm/mask-rcnn_tf-efficientnet-lite0_fpn_mini-coco.py', {}),
    ('timm DINOv2-S/14 (windowed)', 'configs/timm_vit/mask-rcnn_dinov2-s-p14-w14_fpn_mini-coco.py', {}),
    ('ViT-Adapter-S', 'configs/vit_adapter/mask-rcnn_vit-adapter-s_fpn_mini-coco.py', {}),
]
BENCHMARKS = [  # tools/benchmark.py arguments
    ['configs/swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', '--backbone-only', '--shape', '800', '1216'],
    ['configs/swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', '--shape', '800', '1216'],
    ['configs/convnext/mask-rcnn_convnext-t-p4-w7_fpn_1x_coco.py', '--backbone-only', '--shape', '800', '1216'],
    ['configs/convnext/mask-rcnn_convnext-t-p4-w7_fpn_1x_coco.py', '--shape', '800', '1216'],
]
SECTIONS = ('backbones', 'train', 'benchmarks')


@dataclass
class Row:
    section: str
    check: str
    result: str
    limit: str = ''
    status: str = 'info'  # 'pass' | 'FAIL' | 'info' (measured, no limit)


# ---- numerics ------------------------------------------------------------------------------------------------

def flatten_tensors(value) -> List[torch.Tensor]:
    """The tensors of a (nested) tuple / list / dict output, in a fixed order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for key in sorted(value) for t in flatten_tensors(value[key])]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in flatten_tensors(item)]
    return []


def relative_error(values: Sequence[torch.Tensor], references: Sequence[torch.Tensor]) -> float:
    """Largest ||value - reference|| / ||reference|| over pairs (compared in fp64 on the CPU); inf when the
    shapes differ or a value is not finite."""
    if len(values) != len(references):
        return math.inf
    worst = 0.0
    for value, ref in zip(values, references):
        value, ref = value.detach().double().cpu(), ref.detach().double().cpu()
        if value.shape != ref.shape or not torch.isfinite(value).all():
            return math.inf
        worst = max(worst, (torch.linalg.vector_norm(value - ref) /
                            torch.linalg.vector_norm(ref).clamp_min(1e-30)).item())
    return worst


@contextlib.contextmanager
def exact_fp32():
    """fp32 matmuls and convolutions without TF32 (restored afterwards)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def forward_backward(model: torch.nn.Module, x: torch.Tensor, loss_weights: Optional[List[torch.Tensor]],
                     precision: str = 'fp32'):
    """(outputs, [input grad, parameter grads...]) of one forward + backward of ``sum_i <w_i, out_i>``, the
    forward under autocast for fp16 / bf16. ``loss_weights=None`` draws them (seeded) from the outputs' shapes."""
    x = x.detach().clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    with torch.autocast(device_type=x.device.type, dtype=DTYPES[precision], enabled=precision != 'fp32'):
        outputs = flatten_tensors(model(x))
    if loss_weights is None:
        generator = torch.Generator().manual_seed(1)
        loss_weights = [torch.randn(o.shape, generator=generator) for o in outputs]
    loss = sum((o.float() * w.to(o.device)).sum() for o, w in zip(outputs, loss_weights))
    loss.backward()
    grads = [x.grad] + [p.grad if p.grad is not None else torch.zeros_like(p)
                        for p in model.parameters() if p.requires_grad]
    return [o.detach().float() for o in outputs], [g.detach().float() for g in grads], loss_weights


def compare_to_cpu(name: str, model: torch.nn.Module, x: torch.Tensor, device,
                   precisions: Sequence[str] = ('fp32', 'fp16', 'bf16')) -> List[Row]:
    """Rows comparing ``model`` on ``device`` (a copy, same weights) with itself on the CPU in fp32."""
    model = model.cpu().eval()
    ref_out, ref_grads, weights = forward_backward(model, x.cpu(), None)
    on_device = copy.deepcopy(model).to(device)
    rows = []
    for precision in precisions:
        out_tol, grad_tol = TOLERANCES[precision]
        with exact_fp32():
            out, grads, _ = forward_backward(on_device, x.to(device), weights, precision)
        out_err, grad_err = relative_error(out, ref_out), relative_error(grads, ref_grads)
        limit = f'{out_tol:.0e} / {grad_tol:.0e}'
        ok = out_err <= out_tol and grad_err <= grad_tol
        if precision != 'fp32' and name.startswith(CLUSTERING):
            limit, ok = 'finite', all(bool(torch.isfinite(t).all()) for t in out + grads)
        rows.append(Row('backbones', f'{name} {precision} vs CPU fp32',
                        f'outputs {out_err:.1e}, grads {grad_err:.1e}', limit, 'pass' if ok else 'FAIL'))
    return rows


def check_backbones(device, precisions=('fp32', 'fp16', 'bf16')) -> List[Row]:
    from vitdense.runtime.config import build_model, load_config
    rows = []
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(INPUT_SHAPE, generator=generator)
    for name, config, overrides in BACKBONES:
        cfg = load_config(os.path.join(REPO, config))
        cfg.model.backbone.update(overrides)
        torch.manual_seed(0)
        backbone = build_model(cfg, backbone_only=True)
        rows += compare_to_cpu(name, backbone, x, device, precisions)
        del backbone
        torch.cuda.empty_cache()
    return rows


# ---- training + evaluation ------------------------------------------------------------------------------------

def mini_train_configs() -> List[str]:
    """Every Mask R-CNN, Cascade R-CNN, UperNet and Mask2Former mini config, in a fixed order."""
    patterns = ('mask-rcnn_*mini-coco.py', 'cascade-mask-rcnn_*mini-coco.py', 'upernet_*mini-ade20k.py',
                'mask2former_*mini-ade20k.py')
    return sorted(p for pattern in patterns for p in glob.glob(os.path.join(REPO, 'configs', '*', pattern)))


def train_and_evaluate(config: str, iters: int, work_dir: str, device) -> Row:
    """Train ``config`` for ``iters`` iterations on ``device``, evaluate once at the end; one row."""
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from vitdense.runtime.config import load_config
    from vitdense.runtime.data_checks import check_data

    class Record(Hook):
        def __init__(self):
            self.losses, self.metrics = [], None

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.losses.append(float(outputs['loss']))

        def after_val_epoch(self, runner, metrics=None):
            self.metrics = dict(metrics or {})

    cfg = load_config(config, {'train_cfg.max_iters': iters, 'train_cfg.val_interval': iters,
                               'default_hooks.checkpoint.interval': iters}, work_dir)
    check_data(cfg, loaders=('train_dataloader', 'val_dataloader'))
    cfg.launcher = 'none'
    record = Record()
    if torch.device(device).type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    runner = Runner.from_cfg(cfg)
    runner.register_hook(record, priority='LOWEST')
    runner.train()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if torch.device(device).type == 'cuda' else 0.0
    return train_row(os.path.relpath(config, REPO), iters, record.losses, record.metrics, seconds, peak)


def train_row(config: str, iters: int, losses: List[float], metrics: Optional[Dict[str, float]],
              seconds: float, peak_mb: float) -> Row:
    """Pass when all ``iters`` losses are finite and the evaluation returned metrics."""
    finite = len(losses) == iters and all(math.isfinite(v) for v in losses)
    shown = {k: v for k, v in (metrics or {}).items() if k.endswith(('bbox_mAP', 'segm_mAP', 'mIoU', 'aAcc'))}
    result = (f'loss {losses[0]:.3f} -> {losses[-1]:.3f}' if losses else 'no loss logged') + ', ' + (
        ', '.join(f'{k.split("/")[-1]} {v:.3f}' for k, v in shown.items()) if shown else 'no metrics') + (
        f'; {seconds:.0f} s, peak {peak_mb:.0f} MB')
    return Row('train', f'{config} ({iters} iters + eval)', result, 'finite losses, metrics',
               'pass' if finite and shown else 'FAIL')


# ---- benchmarks ------------------------------------------------------------------------------------------------

def run_script(path: str, argv: List[str]) -> str:
    """stdout of ``python path argv`` run in this process."""
    saved, sys.argv = sys.argv, [path, *argv]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(path, run_name='__main__')
    except SystemExit as exc:
        if exc.code:
            raise RuntimeError(f'{path} {" ".join(argv)} exited with {exc.code}:\n{out.getvalue()}') from None
    finally:
        sys.argv = saved
    return out.getvalue()


def benchmark_rows(label: str, results: dict) -> List[Row]:
    """Rows of tools/benchmark.py --compare results (vitdense first, then each reference)."""
    rows = [Row('benchmarks', f'{label}: {name}', f'{r.images_per_s:.2f} img/s, peak {r.peak_mem / 2**20:.0f} MB')
            for name, r in results.items()]
    (_, ours), *refs = results.items()
    for ref_name, ref in refs:
        rows.append(Row('benchmarks', f'{label}: vitdense / {ref_name}',
                        f'throughput {ours.images_per_s / ref.images_per_s:.2f}x, '
                        f'peak memory {ours.peak_mem / max(ref.peak_mem, 1):.2f}x'))
    return rows


def check_benchmarks(device) -> List[Row]:
    rows = []
    benchmark = runpy.run_path(os.path.join(REPO, 'tools/benchmark.py'))['main']
    for args in BENCHMARKS:
        with contextlib.redirect_stdout(io.StringIO()):
            results = benchmark([os.path.join(REPO, args[0]), *args[1:], '--compare', '--device', str(device),
                                 '--no-progress'])
        what = 'backbone' if '--backbone-only' in args else 'Mask R-CNN predict'
        rows += benchmark_rows(f'{os.path.basename(args[0])} {what} 800x1216', results)
    torch.cuda.reset_peak_memory_stats(device)
    text = run_script(os.path.join(REPO, 'tools/benchmark_boat.py'),
                      ['--device', str(device), '--sizes', '800x1216', '512x512', '--repeats', '5'])
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    for line in text.splitlines()[1:]:
        if ':' in line:
            size_layout, result = line.split(':', 1)
            rows.append(Row('benchmarks', f'benchmark_boat BOAT-Swin-T {size_layout}', result.strip()))
    rows.append(Row('benchmarks', 'benchmark_boat peak CUDA memory (all models, both sizes)', f'{peak:.0f} MB'))
    return rows


# ---- table ---------------------------------------------------------------------------------------------------

def format_table(rows: Sequence[Row], header: str) -> str:
    """Markdown: a header line, then | section | check | result | limit | status | rows."""
    def cell(text):
        return str(text).replace('|', '\\|').replace('\n', ' ')
    lines = [header, '', '| section | check | result | limit | status |', '|---|---|---|---|---|']
    lines += [f'| {cell(r.section)} | {cell(r.check)} | {cell(r.result)} | {cell(r.limit)} | {r.status} |'
              for r in rows]
    failed = sum(r.status == 'FAIL' for r in rows)
    lines += ['', f'{sum(r.status == "pass" for r in rows)} passed, {failed} failed']
    return '\n'.join(lines) + '\n'


def write_table(text: str, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def environment_line(device) -> str:
    import mmcv

    from vitdense.engine.device import mmcv_ops_cuda_version
    return (f'tools/check_gpu.py on {torch.cuda.get_device_name(device)} '
            f'(sm_{"".join(map(str, torch.cuda.get_device_capability(device)))}), torch {torch.__version__} '
            f'(CUDA {torch.version.cuda}), mmcv {mmcv.__version__} (ops CUDA {mmcv_ops_cuda_version()}), '
            f'{time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}')


def guarded(section: str, what: str, fn: Callable[[], List[Row]]) -> List[Row]:
    """A check that raised becomes one FAIL row (the others still run)."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001  (reported in the table)
        return [Row(section, what, f'{type(err).__name__}: {" ".join(str(err).split())[:300]}', '', 'FAIL')]


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='work_dirs/check_gpu.md', help='Markdown table (default: %(default)s)')
    parser.add_argument('--device', default='cuda', help="CUDA device (default: 'cuda')")
    parser.add_argument('--skip', nargs='+', default=[], choices=SECTIONS, help='sections not to run')
    parser.add_argument('--train-iters', type=int, default=20, help='iterations per mini config (default 20)')
    parser.add_argument('--train-configs', nargs='+', help='mini configs to train (default: every Mask R-CNN, '
                                                             'Cascade, UperNet and Mask2Former mini config)')
    parser.add_argument('--work-dir', default='work_dirs/check_gpu', help='training runs go here')
    return parser


def require_cuda(device: str) -> torch.device:
    """The CUDA device to check, or a one-line UserError."""
    if not torch.cuda.is_available():
        raise UserError(f'no CUDA device: torch {torch.__version__} sees no GPU (torch.cuda.is_available() is '
                        'False); run tools/check_gpu.py on a machine with an NVIDIA GPU')
    device = torch.device(device)
    if device.type != 'cuda':
        raise UserError(f'--device must be a CUDA device (cuda or cuda:N), got {device}')
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f'--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible')
    from vitdense.engine.device import check_mmcv_ops_for_device
    check_mmcv_ops_for_device(device)
    return device


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.train_iters < 1:
        raise UserError(f'--train-iters must be >= 1, got {args.train_iters}')
    device = require_cuda(args.device)
    if device.index is not None:  # 'cuda' alone: the current device
        torch.cuda.set_device(device)
    rows = []
    if 'backbones' not in args.skip:
        rows += guarded('backbones', 'backbone checks', lambda: check_backbones(device))
    if 'train' not in args.skip:
        configs = [os.path.abspath(c) for c in args.train_configs] if args.train_configs else mini_train_configs()
        if not any('cascade' in os.path.basename(c) for c in configs):
            rows.append(Row('train', 'Cascade Mask R-CNN mini config', 'skipped: no cascade-mask-rcnn_*mini '
                                                                        'config exists yet'))
        for config in configs:
            name = os.path.splitext(os.path.basename(config))[0]
            rows += guarded('train', os.path.relpath(config, REPO), lambda: [train_and_evaluate(
                config, args.train_iters, os.path.join(args.work_dir, name), device)])
    if 'benchmarks' not in args.skip:
        rows += guarded('benchmarks', 'benchmarks', lambda: check_benchmarks(device))
    text = format_table(rows, environment_line(device))
    print(text, end='')
    write_table(text, args.out)
    print(f'written to {args.out}')
    return 1 if any(r.status == 'FAIL' for r in rows) else 0


if __name__ == '__main__':
    run_tool(lambda: sys.exit(main()))
