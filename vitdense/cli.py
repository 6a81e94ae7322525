"""The ``vitdense`` command: the tools as subcommands, CONFIG as a file or a shipped config name.

    vitdense list-configs [PATTERN]                 # shipped configs (substring or glob, e.g. 'swin/*mini*')
    vitdense train CONFIG [--test] [train options]  # --test: then evaluate the last checkpoint (one command)
    vitdense test CONFIG CHECKPOINT [options]
    vitdense demo CONFIG CHECKPOINT INPUT [options]
    vitdense flops | benchmark | browse CONFIG [options]
    vitdense convert SRC DST --config CONFIG [options]
    vitdense transfer --model CONFIG CKPT ... [options]
    vitdense <command> --help                       # the tool's own options

Each subcommand runs the shipped script (``vitdense/.mim/tools/<tool>.py``, the checkout's ``tools/``) in this
process, with the arguments as given except that shipped config names become their paths: the same program as
``python tools/<tool>.py``. Bad input: one ``error:`` line and exit status 2.
"""
import os.path as osp
import runpy
import subprocess
import sys
from typing import List, Optional

from vitdense import __version__

# subcommand -> (script in tools/, whether its first argument is a CONFIG, one-line summary)
TOOLS = {
    'train': ('train.py', True, 'train a config (--test: then evaluate its last checkpoint)'),
    'test': ('test.py', True, 'evaluate a checkpoint: COCO AP, mIoU or top-1'),
    'demo': ('demo.py', True, 'draw predictions on images'),
    'flops': ('get_flops.py', True, 'parameters and FLOPs of a config'),
    'benchmark': ('benchmark.py', True, 'inference speed and memory of a config (--train: training iterations)'),
    'profile-iteration': ('profile_iteration.py', True, 'where one training iteration of a config goes'),
    'benchmark-optimizer': ('benchmark_optimizer.py', True, 'optimiser step: parameter groups and AdamW kernels'),
    'browse': ('browse_dataset.py', True, 'draw a config\'s dataset samples as the model sees them'),
    'convert': ('convert_checkpoint.py', False, 'convert a checkpoint to a vitdense backbone layout'),
    'transfer': ('transfer_eval.py', False, 'linear probe / k-NN / short dense fine-tune of backbones'),
    'analyze-logs': ('analyze_logs.py', False, 'plot training curves from work dirs'),
    'model-zoo': ('model_zoo.py', False, 'params / FLOPs table of the shipped configs'),
    'model-index': ('model_index.py', False, 'write model-index.yml and configs/*/metafile.yml'),
    'make-coco-crops': ('make_coco_crops.py', False, 'make the mini classification set from mini COCO'),
    'benchmark-boat': ('benchmark_boat.py', False, 'BOAT attention timings'),
    'benchmark-sequencer': ('benchmark_sequencer.py', False, 'Sequencer BiLSTM timings'),
    'benchmark-linear': ('benchmark_linear.py', False, 'float32 CPU linear GEMMs: torch (MKL) vs vitdense (oneDNN)'),
}
OWN = {'list-configs': 'list the shipped configs: vitdense list-configs [PATTERN] [--paths]'}


def usage() -> str:
    width = max(map(len, list(TOOLS) + list(OWN)))
    lines = [f'vitdense {__version__}: dense prediction with vision-transformer-era backbones', '',
             'usage: vitdense COMMAND [ARGS]   (vitdense COMMAND --help for its options)', '', 'commands:']
    lines += [f'  {name:<{width}}  {text}' for name, text in OWN.items()]
    lines += [f'  {name:<{width}}  {text}' for name, (_, _, text) in TOOLS.items()]
    lines += ['', 'CONFIG: a config file, or a shipped config name such as '
              'swin/mask-rcnn_swin-t-p4-w7_fpn_mini-coco (or its basename)']
    return '\n'.join(lines)


def fail(message: str) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


def tool_path(script: str) -> str:
    from vitdense.zoo import TOOLS_DIR
    path = osp.realpath(osp.join(TOOLS_DIR, script))
    if not osp.isfile(path):
        fail(f'{path} is missing: the vitdense install is incomplete (reinstall it: pip install vitdense)')
    return path


def resolve_args(args: List[str], config_first: bool) -> List[str]:
    """Shipped config names -> paths: the first argument when the tool takes a CONFIG there (unknown names fail
    in one line), and any other argument that names a shipped config and is not a file."""
    from vitdense.errors import UserError
    from vitdense.zoo import find_config, resolve_config
    out = list(args)
    for i, arg in enumerate(out):
        if arg.startswith('-') or osp.exists(arg):
            continue
        if i == 0 and config_first:
            try:
                out[i] = resolve_config(arg)
            except UserError as err:
                fail(str(err))
        else:
            found = find_config(arg)
            if found is not None:
                out[i] = found
    return out


def run_script(script: str, args: List[str]) -> None:
    """Run tools/<script> as ``python tools/<script> ARGS`` would, in this process."""
    path = tool_path(script)
    saved = sys.argv
    sys.argv = [path] + list(args)
    try:
        runpy.run_path(path, run_name='__main__')
    finally:
        sys.argv = saved


def train_then_test(args: List[str]) -> None:
    """``vitdense train CONFIG --test ...``: train, then evaluate the checkpoint ``last_checkpoint`` names in a
    fresh process (``WORK_DIR/test`` gets the evaluation logs); the metrics line ends the output."""
    import argparse

    from vitdense.runtime.config import DictAction, load_config
    from vitdense.runtime.errors import run_tool
    args = [a for a in args if a != '--test']
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('config')
    parser.add_argument('--work-dir')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--launcher', default='none')
    known, _ = parser.parse_known_args(args)
    if known.launcher != 'none':
        fail('--test runs in one process; with --launcher, run vitdense test CONFIG CHECKPOINT after training')
    work_dir = {}

    def find_work_dir():
        work_dir['path'] = load_config(known.config, known.cfg_options, known.work_dir).work_dir

    run_tool(find_work_dir)
    if known.work_dir is None:
        args += ['--work-dir', work_dir['path']]
    run_script('train.py', args)
    pointer = osp.join(work_dir['path'], 'last_checkpoint')
    if not osp.isfile(pointer):
        fail(f'training wrote no {pointer}; nothing to evaluate')
    with open(pointer) as f:
        checkpoint = f.read().strip()
    test_args = [known.config, checkpoint, '--work-dir', osp.join(work_dir['path'], 'test')]
    if known.cfg_options:
        test_args += ['--cfg-options'] + [f'{k}={v}' for k, v in known.cfg_options.items()]
    code = subprocess.call([sys.executable, '-m', 'vitdense', 'test'] + test_args)
    if code:
        sys.exit(code)


def list_configs_command(args: List[str]) -> None:
    from vitdense.zoo import list_configs, shipped_configs
    paths = '--paths' in args
    rest = [a for a in args if a != '--paths']
    if any(a.startswith('-') for a in rest) or len(rest) > 1:
        if '-h' in rest or '--help' in rest:
            print(OWN['list-configs'])
            return
        fail(f"list-configs takes one PATTERN and --paths, got: {' '.join(rest)}")
    pattern = rest[0] if rest else None
    names = list_configs(pattern)
    if not names:
        fail(f"no shipped config matches '{pattern}'; vitdense list-configs lists them all")
    configs = shipped_configs()
    for name in names:
        print(configs[name] if paths else name)


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        fail('no command given; vitdense --help lists the commands')
    command, args = argv[0], argv[1:]
    if command in ('-h', '--help', 'help'):
        print(usage())
        return
    if command == '--version':
        print(__version__)
        return
    if command == 'list-configs':
        return list_configs_command(args)
    if command not in TOOLS:
        import difflib
        close = difflib.get_close_matches(command, list(TOOLS) + list(OWN), n=3)
        fail(f"unknown command '{command}'" + (f"; did you mean {', '.join(close)}?" if close else '') +
             '; vitdense --help lists the commands')
    script, config_first, _ = TOOLS[command]
    if '-h' in args or '--help' in args:
        return run_script(script, args)
    args = resolve_args(args, config_first)
    if command == 'train' and '--test' in args:
        return train_then_test(args)
    run_script(script, args)


if __name__ == '__main__':
    main()
