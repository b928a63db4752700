"""Coursework: student versions match their solutions, and every self-check tells them apart."""

import importlib.util
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "notebooks" / "exercises").glob("ex*.py"))


def load_script():
    spec = importlib.util.spec_from_file_location(
        "make_student_versions", ROOT / "scripts" / "make_student_versions.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_until_check(source: str) -> None:
    """Execute the code cells of a py:percent exercise up to its self-check cell."""
    namespace: dict = {}
    for cell in jupytext.reads(source, fmt="py:percent").cells:
        if cell.cell_type != "code":
            continue
        code = "\n".join(
            line for line in cell.source.splitlines() if not line.lstrip().startswith("%")
        )
        exec(compile(code, "<exercise>", "exec"), namespace)
        if "gp.checks.check_" in cell.source:
            return
    raise AssertionError("the exercise has no gp.checks.check_* cell")


def test_there_are_at_least_four_exercises():
    assert len(SOLUTIONS) >= 4


def test_student_versions_are_up_to_date():
    stale = load_script().stale_files()
    assert not stale, f"run python scripts/make_student_versions.py; stale: {stale}"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_self_check_passes_on_the_solution(solution):
    run_until_check(solution.read_text())


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_self_check_fails_on_the_student_stub(solution):
    student = load_script().student_source(solution.read_text())
    assert "raise NotImplementedError" in student and "BEGIN SOLUTION" not in student
    with pytest.raises(AssertionError, match="NotImplementedError"):
        run_until_check(student)


def test_generator_replaces_blocks_at_their_indentation():
    script = load_script()
    source = "def f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\n"
    assert script.student_source(source) == (
        "def f():\n    # Write your code here.\n    raise NotImplementedError\n"
    )


def test_generator_rejects_an_unclosed_block():
    with pytest.raises(ValueError, match="never closed"):
        load_script().student_source("# BEGIN SOLUTION\nx = 1\n")
