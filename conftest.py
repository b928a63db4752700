"""Settings for every test run: the library's tests and the notebooks under nbval alike.

OpenMP threads that wait for work sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``).
On a machine shared with other jobs, a notebook kernel's spinning threads fight those jobs
for the cores: beside one busy process on 2 cores, notebook 04 executed in 277 s with
spinning threads and in 22 s with sleeping ones; on the quiet machine both took 19 s
(measured 30 November 2026). This file is read before any kernel starts and before torch
is imported, so the test process and every kernel it starts inherit the setting. A value
the caller set wins.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
