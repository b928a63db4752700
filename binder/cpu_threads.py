"""How many CPU threads this container may really use; printed for binder/start.

Inside a container `os.cpu_count()` reports the host's cores (often 32-128), while the
container's cgroup quota allows perhaps 1-2 CPUs. PyTorch then starts one OpenMP thread per
host core, and the oversubscribed threads make every matmul many times slower. So we read the
quota the kernel enforces and hand the result to OMP_NUM_THREADS / MKL_NUM_THREADS.

Usage: ``python binder/cpu_threads.py`` prints one integer >= 1.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path


def _cgroup_v2_quota(root: Path) -> float | None:
    """CPUs allowed by cgroup v2 `cpu.max` ("QUOTA PERIOD" or "max PERIOD"), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def _cgroup_v1_quota(root: Path) -> float | None:
    """CPUs allowed by cgroup v1 CFS quota/period (quota -1 means unlimited), or None."""
    for controller in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        folder = root / controller
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota > 0 and period > 0:
            return quota / period
        return None
    return None


def _spawner_limit(environ: Mapping[str, str]) -> float | None:
    """CPU_LIMIT as set by JupyterHub's KubeSpawner (Binder sets it), or None."""
    try:
        limit = float(environ.get("CPU_LIMIT", ""))
    except ValueError:
        return None
    return limit if limit > 0 else None


def _visible_cpus() -> int:
    """CPUs this process may be scheduled on (affinity), falling back to cpu_count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_threads(
    cgroup_root: str | os.PathLike = "/sys/fs/cgroup", environ: Mapping[str, str] | None = None
) -> int:
    """Threads to give PyTorch: the tightest of every CPU limit we can see, rounded down, >= 1.

    cgroup_root: where the cgroup file system is mounted (a folder of fake files in tests).
    environ: the environment to read CPU_LIMIT from (default os.environ).
    """
    root = Path(cgroup_root)
    environ = os.environ if environ is None else environ
    limits = [float(_visible_cpus())]
    for limit in (_cgroup_v2_quota(root), _cgroup_v1_quota(root), _spawner_limit(environ)):
        if limit is not None:
            limits.append(limit)
    # Rounded down: half a CPU of quota is one thread, 2.5 CPUs are two threads, because an
    # extra thread on a throttled quota costs more than it brings.
    return max(1, math.floor(min(limits)))


if __name__ == "__main__":
    print(cpu_threads())
