"""Timing and memory probes: throughput of forward functions, their peak memory, one timed call."""
import ctypes
import gc
import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch


def _rss_kb(field_name: str) -> Optional[int]:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field_name + ':'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _release_cpu_memory() -> None:
    gc.collect()
    try:  # hand freed heap pages back, so the next measurement's baseline is not inflated
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory a block of code adds, in bytes (``.peak``).

    CUDA: ``torch.cuda.max_memory_allocated`` minus what was allocated before. CPU: the process's peak
    resident set (VmHWM, reset through /proc/self/clear_refs) minus its resident set before; where the peak
    cannot be reset, ``resource``'s lifetime peak is used, which hides peaks below an earlier one.
    """

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.peak = 0
        self.method = ''

    def __enter__(self):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self.method = 'cuda max_memory_allocated'
            return self
        _release_cpu_memory()
        try:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')  # reset VmHWM to the current RSS
            self.method = 'peak RSS (VmHWM)'
        except OSError:
            self.method = 'lifetime peak RSS (ru_maxrss)'
        self._base = (_rss_kb('VmRSS') or 0) * 1024
        return self

    def __exit__(self, *exc):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            peak_kb = _rss_kb('VmHWM') if self.method.startswith('peak RSS') else None
            if peak_kb is None:
                import resource
                peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.peak = max(0, peak_kb * 1024 - self._base)
        return False


@dataclass
class Speed:
    name: str
    images_per_s: float
    median_s: float
    times: List[float]
    peak_mem: int
    mem_method: str


def benchmark(runners: Dict[str, Callable[[], object]], batch: int, device, warmup: int = 2,
              repeats: int = 5, progress: bool = True, grad: bool = False) -> Dict[str, Speed]:
    """Time and measure several forward functions on the same input, fairly.

    Each runner gets ``warmup`` untimed calls, then one call under :class:`PeakMemory`; the ``repeats``
    timed calls are interleaved across runners (a, b, a, b, ...) so a change in machine load affects all
    of them alike. Throughput is ``batch`` / median time. ``grad=True`` runs them with autograd on (runners
    that do a backward pass); otherwise under ``torch.no_grad()``.
    """
    device = torch.device(device)
    bar = progress_bar(total=len(runners) * (warmup + 1 + repeats), desc='benchmark', enabled=progress)
    peaks = {}
    with torch.set_grad_enabled(grad):
        for name, run in runners.items():
            for _ in range(warmup):
                run()
                bar.update()
            with PeakMemory(device) as mem:
                run()
                synchronize(device)
            bar.update()
            peaks[name] = mem
        times = {name: [] for name in runners}
        for _ in range(repeats):
            for name, run in runners.items():
                synchronize(device)
                start = time.perf_counter()
                run()
                synchronize(device)
                times[name].append(time.perf_counter() - start)
                bar.update()
    bar.close()
    out = {}
    for name in runners:
        median = statistics.median(times[name])
        out[name] = Speed(name, batch / median, median, times[name], peaks[name].peak, peaks[name].method)
    return out


def progress_bar(total: int, desc: str, enabled: bool = True):
    """A tqdm bar on stderr (stdout stays clean for tables), or a no-op."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


def set_threads(num: Optional[int]) -> None:
    if num:
        torch.set_num_threads(num)
        os.environ['OMP_NUM_THREADS'] = str(num)


def synchronize(device) -> None:
    """Wait for the device's queued work (a no-op off CUDA), so a timer around it measures the work."""
    device = torch.device(device)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed_call(fn: Callable, x: torch.Tensor) -> Tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn(x)``; on a GPU, synchronised before and after."""
    synchronize(x.device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn(x)
    synchronize(x.device)
    return time.perf_counter() - wall, time.process_time() - cpu
