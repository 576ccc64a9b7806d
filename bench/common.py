"""Small timing helpers shared by the benchmark scripts (scripts print; they never assert)."""
from __future__ import annotations

import platform
import statistics
import time
from typing import Callable, Dict

import torch


def time_call(fn: Callable[[], object], warmup: int = 2, repeat: int = 7, sync: Callable[[], None] = lambda: None) -> Dict[str, float]:
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - start)
    return {"median_s": statistics.median(samples), "min_s": min(samples)}


def machine_line() -> str:
    import localmamba

    info = localmamba.build_info()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}; torch threads {torch.get_num_threads()}, localmamba threads {info['num_threads']}; "
        f"torch {torch.__version__}; localmamba {info['version']} ({info['simd_runtime']})"
    )
