"""The repository's pytest settings (pyproject.toml's addopts, the root conftest.py) leave
the ways the README runs pytest working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICK = "tests/test_sweep.py::test_runs_read_back_as_the_same_floats_with_their_provenance"
#: a quick test in another file: with QUICK, two files, which two workers can share
OTHER = "tests/test_pytest_settings.py::test_memory_limit_takes_the_tightest_of_cgroup_spawner_and_machine"


def used_workers(*arguments: str, environment: dict | None = None) -> bool:
    """Run pytest on ``arguments`` in a subprocess; whether it started xdist workers."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *arguments],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return "bringing up nodes" in done.stdout


@pytest.mark.parametrize("option", ["--pdb", "--trace"])
def test_a_debugger_option_runs_the_tests_in_this_process(option):
    """``-n 2`` in addopts made ``pytest --pdb`` stop with 'incompatible with distributing
    tests' and ``pytest --trace`` never stop, the tests running in workers; the root
    conftest turns the workers off for both. --trace's prompt is answered 'continue'."""
    pytest.importorskip("xdist")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", QUICK, option, "-q"],
        cwd=ROOT,
        input="c\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert "bringing up nodes" not in done.stdout  # no workers
    if option == "--trace":
        assert "PDB runcall" in done.stdout  # the debugger did stop at the test


def test_where_memory_cannot_hold_two_kernels_the_suite_runs_in_one_process():
    """Binder gives 2 GB; two workers each running a notebook kernel (up to 1.3 GB) could be
    killed for memory there, so below 2 GB per worker the root conftest drops pyproject's
    -n 2. An -n on the command line is still obeyed."""
    pytest.importorskip("xdist")
    tight = {**os.environ, "MEM_LIMIT": str(2 * 1024**3)}  # as JupyterHub sets it on Binder
    roomy = {**os.environ, "MEM_LIMIT": str(64 * 1024**3)}
    workers = {
        "tight": used_workers(QUICK, OTHER, environment=tight),
        "tight, -n 2 asked": used_workers(QUICK, OTHER, "-n", "2", environment=tight),
        "roomy": used_workers(QUICK, OTHER, environment=roomy),
    }
    roomy_machine = (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) >= 4 * 1024**3
    assert workers == {"tight": False, "tight, -n 2 asked": True, "roomy": roomy_machine}


def test_one_file_runs_in_one_process_unless_workers_are_asked_for():
    """--dist loadfile hands a whole file to one worker, so for one notebook or one test
    module a second worker could only wait (and starting both cost about 8 s a run)."""
    pytest.importorskip("xdist")
    workers = {
        "one file": used_workers(QUICK),
        "one file, -n 2 asked": used_workers(QUICK, "-n", "2"),
    }
    assert workers == {"one file": False, "one file, -n 2 asked": True}


def test_memory_limit_takes_the_tightest_of_cgroup_spawner_and_machine(tmp_path, monkeypatch):
    from gradprune_lite import _test_workers as workers

    monkeypatch.setattr(workers, "_physical_memory", lambda: 64 * 1024**3)
    (tmp_path / "memory.max").write_text("2147483648\n")  # cgroup v2: 2 GiB
    assert workers.memory_limit(tmp_path, environ={}) == 2 * 1024**3
    assert workers.memory_limit(tmp_path, environ={"MEM_LIMIT": "1073741824"}) == 1024**3
    (tmp_path / "memory.max").write_text("max\n")  # no cgroup limit: the machine's
    assert workers.memory_limit(tmp_path, environ={"MEM_LIMIT": "junk"}) == 64 * 1024**3
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text(str(2**63 - 4096))  # v1's "none"
    assert workers.memory_limit(v1, environ={}) == 64 * 1024**3
    (v1 / "memory" / "memory.limit_in_bytes").write_text("3221225472")  # 3 GiB
    assert workers.memory_limit(v1, environ={}) == 3 * 1024**3
    assert workers.workers_that_fit(2, 3 * 1024**3) == 0
    assert workers.workers_that_fit(2, 4 * 1024**3) == 2
    assert workers.workers_that_fit(2, None) == 2
    assert workers.workers_that_fit(0, 1024) == 0
