"""One setting for every pytest run in this repository, set before torch is imported.

OpenMP threads that wait for work sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``).
On a machine shared with other jobs, a notebook kernel's spinning threads fight those jobs
for the cores: beside one busy process on 2 cores, notebook 04 executed in 277 s with
spinning threads and in 22 s with sleeping ones; on the quiet machine both took 19 s
(measured 30 November 2026). The results are the same bit for bit either way.

This file sits at the repository root, so pytest reads it for any path it is given,
``tests/`` or a single notebook (``python -m pytest --nbval notebooks/04_...ipynb``), before
nbval or the browser test start a kernel: the test process, its workers and every kernel
inherit the setting. (In ``tests/conftest.py`` it missed the second case: notebook 04 alone
took 376 s beside other jobs on 5 December.) A value the caller set wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402 - after the setting, though pytest does not load torch


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """``--pdb`` and ``--trace`` run in this process, as if ``-n 0`` were given.

    ``pyproject.toml``'s ``-n 2`` would otherwise make ``pytest --pdb`` stop with a usage
    error and ``pytest --trace`` run its tests in workers without ever stopping. Runs before
    pytest-xdist's own tryfirst hook reads the worker count: of two tryfirst hooks, the
    later registered (this conftest) runs first.
    """
    if config.getoption("usepdb", False) or config.getoption("trace", False):
        if hasattr(config.option, "numprocesses"):  # pytest-xdist is installed
            config.option.numprocesses = 0
