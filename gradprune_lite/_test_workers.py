"""How many pytest-xdist workers the test suite may use on this machine.

``pyproject.toml`` asks for two workers (``-n 2``), so that the suite fits its 8-minute
budget on a 2-core machine. Each worker runs one notebook kernel at a time, and a kernel
can reach 1.3 GB of resident memory (notebook 03 on a loaded machine, README "Budgets").
Binder gives a session 2 GB, where two kernels at once could be killed for memory; so
where the memory this process may use is under ``MEMORY_PER_WORKER`` per worker, the
root ``conftest.py`` runs the suite in one process instead. Used only by that conftest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: Memory each worker needs: its largest kernel (1.3 GB) and the pytest process, rounded up.
MEMORY_PER_WORKER = 2 * 1024**3


def _cgroup_limit(root: Path) -> int | None:
    """Bytes allowed by cgroup v2 ``memory.max`` or v1 ``memory.limit_in_bytes``, or None."""
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        try:
            value = int(text)
        except ValueError:
            continue
        # cgroup v1 writes "no limit" as a huge number near 2**63
        return value if value < 2**60 else None
    return None


def _spawner_limit(environ: Mapping[str, str]) -> int | None:
    """MEM_LIMIT in bytes, as JupyterHub's spawners set it (Binder does), or None."""
    try:
        value = int(environ.get("MEM_LIMIT", ""))
    except ValueError:
        return None
    return value if value > 0 else None


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not on Windows
        return None


def memory_limit(
    cgroup_root: Path = Path("/sys/fs/cgroup"), environ: Mapping[str, str] | None = None
) -> int | None:
    """The tightest memory limit this process runs under, in bytes (None when unknown)."""
    environ = os.environ if environ is None else environ
    limits = [
        limit
        for limit in (_cgroup_limit(cgroup_root), _spawner_limit(environ), _physical_memory())
        if limit is not None
    ]
    return min(limits) if limits else None


def workers_that_fit(asked: int, limit: int | None) -> int:
    """``asked`` workers, or 0 (one process) when ``limit`` bytes cannot hold them all."""
    if asked >= 2 and limit is not None and limit < asked * MEMORY_PER_WORKER:
        return 0
    return asked
