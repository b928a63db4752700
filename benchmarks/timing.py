"""Timing and machine-description helpers shared by ``run.py`` and ``gpu_check.py``."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

#: The clock that ``median_seconds`` reads: wall time by default; ``use_cpu_clock()`` switches
#: to this process's CPU time, which on a crowded machine leaves out the time spent waiting
#: for a core (meaningful with one thread; with several it also counts threads that spin).
_clock = time.perf_counter


def use_cpu_clock() -> None:
    global _clock
    _clock = time.process_time


def clock_name() -> str:
    return "process CPU time" if _clock is time.process_time else "wall clock"


def sync(device: torch.device | str) -> None:
    """Wait for queued CUDA work, so a wall-clock time covers the kernels, not their launch."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_seconds(
    fn: Callable[[], object],
    repeats: int = 5,
    warmup: int = 1,
    setup: Callable[[], object] | None = None,
    device: torch.device | str = "cpu",
) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs; ``setup()`` runs untimed before each."""
    times = []
    for i in range(warmup + repeats):
        if setup is not None:
            setup()
        sync(device)
        start = _clock()
        fn()
        sync(device)
        if i >= warmup:
            times.append(_clock() - start)
    return statistics.median(times)


def interleaved_medians(
    fns: dict[str, Callable[[], object]],
    rounds: int,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Median seconds of each function, run once per round in turn (order rotating).

    On a shared machine the background load changes from second to second; taking the
    contenders in turn puts them under the same load, which blocks of repeats do not.
    """
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up
        fns[name]()
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            sync(device)
            start = _clock()
            fns[name]()
            sync(device)
            times[name].append(_clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unavailable"


def machine_details(device: str = "cpu") -> dict[str, str]:
    """What a reader needs to judge the numbers: hardware, software, threads, date, load."""
    details = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "clock": clock_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load average (1, 5, 15 min) at start": load_average(),
    }
    try:
        import numba

        details["numba"] = numba.__version__
    except ImportError:
        details["numba"] = "not installed (pure-torch sweep)"
    if torch.device(device).type == "cuda":
        details["gpu"] = torch.cuda.get_device_name()
    return details


def fmt_seconds(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
