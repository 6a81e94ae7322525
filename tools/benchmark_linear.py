"""GEMM time of a float32 linear layer on a CPU: torch's ``F.linear`` (MKL) against ``vitdense.models.cpu_layers``
(oneDNN), forward and forward + backward, for the token-major shapes of a backbone's projections and MLPs.

    python tools/benchmark_linear.py [--shapes TOKENSxINxOUT ...] [--threads N] [--repeats N]

The default shapes are Swin-T's at 512 x 512 (batch 1: qkv, MLP in / out of each stage). Both sides get the same
tensors, interleaved; the minimum of ``--repeats`` timed calls (noise only adds time) in ms, GFLOP/s and the
speed-up of vitdense's over torch's.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vitdense.errors import UserError  # noqa: E402
from vitdense.runtime.errors import run_tool  # noqa: E402

SWIN_T_512 = ['16384x96x288', '16384x96x384', '16384x384x96', '4096x192x768', '4096x768x192', '1024x384x1536',
              '1024x1536x384', '256x768x3072', '256x3072x768']


def parse_shape(text):
    try:
        tokens, fan_in, fan_out = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise UserError(f'--shapes: expected TOKENSxINxOUT such as 16384x96x288, got {text!r}') from None
    if min(tokens, fan_in, fan_out) < 1:
        raise UserError(f'--shapes: every size must be >= 1, got {text!r}')
    return tokens, fan_in, fan_out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--shapes', nargs='+', default=SWIN_T_512, help='TOKENSxINxOUT (default: Swin-T at 512²)')
    parser.add_argument('--threads', type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument('--repeats', type=int, default=5, help='timed calls per side (default: 5)')
    args = parser.parse_args(argv)
    if args.repeats < 1:
        raise UserError('--repeats must be >= 1')
    shapes = [parse_shape(s) for s in args.shapes]
    import torch
    import torch.nn.functional as F

    from vitdense.analysis.speed import set_threads
    from vitdense.models.cpu_layers import linear, onednn_applies
    set_threads(args.threads)
    x0 = torch.randn(2, 2)
    if not onednn_applies(x0, x0):
        raise UserError('this torch has oneDNN switched off or missing: vitdense.models.cpu_layers is F.linear here')

    def best(fn):
        fn()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    print(f'{torch.get_num_threads()} CPU threads, minimum of {args.repeats} calls, ms (GFLOP/s)')
    print(f'{"tokens x in x out":<20} {"forward: torch":>16} {"vitdense":>16} {"speed-up":>8}   '
          f'{"fwd+bwd: torch":>16} {"vitdense":>16} {"speed-up":>8}')
    for tokens, fan_in, fan_out in shapes:
        x = torch.randn(tokens, fan_in, requires_grad=True)
        weight = torch.randn(fan_out, fan_in, requires_grad=True)
        bias = torch.randn(fan_out, requires_grad=True)
        grad = torch.randn(tokens, fan_out)
        flop = 2 * tokens * fan_in * fan_out
        cells = []
        for train in (False, True):
            for fn in (F.linear, linear):
                def call(fn=fn, train=train):
                    if train:
                        fn(x, weight, bias).backward(grad)
                    else:
                        with torch.no_grad():
                            fn(x, weight, bias)
                cells.append(best(call))
        fwd_t, fwd_v, train_t, train_v = cells

        def cell(seconds, flops):
            return f'{seconds * 1e3:7.2f} ({flops / seconds / 1e9:5.1f})'
        print(f'{f"{tokens}x{fan_in}x{fan_out}":<20} {cell(fwd_t, flop):>16} {cell(fwd_v, flop):>16} '
              f'{fwd_t / fwd_v:7.2f}x   {cell(train_t, 3 * flop):>16} {cell(train_v, 3 * flop):>16} '
              f'{train_t / train_v:7.2f}x')


if __name__ == '__main__':
    run_tool(main)
