"""The repository's pytest settings (pyproject.toml's addopts, the root conftest.py) leave
the ways the README runs pytest working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICK = "tests/test_sweep.py::test_runs_read_back_as_the_same_floats_with_their_provenance"


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
