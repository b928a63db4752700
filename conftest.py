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
    """``--pdb`` and ``--trace`` run in this process, as if ``-n 0`` were given; so does a run
    of one file (one notebook, one test module), which one worker would take whole; and so
    does the whole suite where memory cannot hold two notebook kernels at once (Binder's
    2 GB, see ``gradprune_lite/_test_workers.py``), unless the command line gives ``-n``.

    ``pyproject.toml``'s ``-n 2`` would otherwise make ``pytest --pdb`` stop with a usage
    error and ``pytest --trace`` run its tests in workers without ever stopping. Runs before
    pytest-xdist's own tryfirst hook reads the worker count: of two tryfirst hooks, the
    later registered (this conftest) runs first.
    """
    if not hasattr(config.option, "numprocesses"):  # pytest-xdist is not installed
        return
    if config.getoption("usepdb", False) or config.getoption("trace", False):
        config.option.numprocesses = 0
    elif _workers_given(config):
        return  # an -n on the command line is the caller's choice
    elif _one_file(config):
        # --dist loadfile gives a whole file to one worker, so a second could only wait
        config.option.numprocesses = 0
    elif isinstance(config.option.numprocesses, int):
        # pyproject's -n 2, where memory cannot hold two notebook kernels (Binder's 2 GB):
        # one process instead
        from gradprune_lite._test_workers import memory_limit, workers_that_fit

        config.option.numprocesses = workers_that_fit(config.option.numprocesses, memory_limit())


def _workers_given(config) -> bool:
    """Whether the command line itself (not pyproject's addopts) names a worker count."""
    return any(
        arg in ("-n", "--numprocesses") or arg.startswith(("-n", "--numprocesses="))
        for arg in config.invocation_params.args
    )


def _one_file(config) -> bool:
    """Whether pytest was given one file (or tests of one file), as in ``pytest x.ipynb``."""
    files = {str(arg).split("::")[0] for arg in config.args}
    return len(files) == 1 and os.path.isfile(next(iter(files)))
