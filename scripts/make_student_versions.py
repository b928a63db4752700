"""Generate the student versions of the coursework exercises from their solutions.

Each solution ``notebooks/exercises/exNN_*.py`` (py:percent) is an nbgrader source notebook:
its cells carry nbgrader metadata (``nbgrader={"solution": true, ...}`` in the ``# %%``
line) and the answer code sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION``.
This script applies nbgrader's own rules (``ClearSolutions``), without needing nbgrader:

- in a solution code cell, each marked region becomes ``# YOUR CODE HERE`` and
  ``raise NotImplementedError()`` at the marker's indentation;
- a solution markdown cell (a written answer) becomes ``YOUR ANSWER HERE``;
- in an autograder cell, the region between ``### BEGIN HIDDEN TESTS`` and ``### END
  HIDDEN TESTS`` is removed, markers included (nbgrader's ``ClearHiddenTests``); autograde
  puts it back from the source, so grading checks more than the student sees;
- outputs and execution counts are cleared; metadata (grade ids, points) is kept, so
  ``nbgrader autograde`` can grade the students' copies;
- a cell tagged ``solution-only`` is dropped: the interpretation that follows a result
  (it would answer a written question or a prediction) and asserts that check what a
  student is asked to predict. nbgrader does the same with nbconvert's
  ``TagRemovePreprocessor``, configured by ``NBGRADER_CONFIG`` below.

``tests/test_exercises.py`` runs ``nbgrader generate_assignment`` on the same solutions and
checks that it produces the same cells, so either tool can make the handout.

Usage:
    python scripts/make_student_versions.py          # (re)write notebooks/exercises/student/
    python scripts/make_student_versions.py --check  # exit 1 if any is missing or stale
    python scripts/make_student_versions.py --nbgrader-config course/nbgrader_config.py
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
EXERCISES = ROOT / "notebooks" / "exercises"
STUDENT = EXERCISES / "student"
BEGIN, END = "BEGIN SOLUTION", "END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
CODE_STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
TEXT_STUB = "YOUR ANSWER HERE"
SOLUTION_ONLY = "solution-only"
#: An ``nbgrader_config.py`` for a course built from these solutions: nbgrader then drops
#: the ``solution-only`` cells from the release as this script does (tested).
NBGRADER_CONFIG = f"""\
from nbconvert.preprocessors import TagRemovePreprocessor
from nbgrader.converters import GenerateAssignment

c = get_config()  # noqa: F821 - nbgrader's config loader defines it
c.GenerateAssignment.preprocessors = [
    TagRemovePreprocessor,
    *GenerateAssignment.class_traits()["preprocessors"].default(),
]
c.TagRemovePreprocessor.enabled = True
c.TagRemovePreprocessor.remove_cell_tags = {{"{SOLUTION_ONLY}"}}
"""


def _replace_regions(
    source: str, origin: str, begin: str, end: str, stub: list[str]
) -> tuple[str, int]:
    """``source`` with each region from a ``begin`` line to an ``end`` line (markers
    included) replaced by ``stub``, indented as the ``begin`` line; and the region count.
    """
    lines, inside, regions = [], False, 0
    for number, line in enumerate(source.split("\n"), start=1):
        if begin in line:
            if inside:
                raise ValueError(f"{origin}, line {number}: {begin} inside another one.")
            inside, regions = True, regions + 1
            indent = re.match(r"\s*", line).group(0)
            lines += [indent + text for text in stub]
        elif end in line:
            if not inside:
                raise ValueError(f"{origin}, line {number}: {end} without BEGIN.")
            inside = False
        elif not inside:
            lines.append(line)
    if inside:
        raise ValueError(f"{origin}: {begin} is never closed by {end}.")
    return "\n".join(lines), regions


def _clear_regions(source: str, origin: str) -> tuple[str, int]:
    """``source`` with every marked solution region replaced by the stub; and their count."""
    return _replace_regions(source, origin, BEGIN, END, CODE_STUB)


def _remove_hidden_tests(source: str, origin: str) -> tuple[str, int]:
    """``source`` without its hidden-test regions (markers included); and their count."""
    return _replace_regions(source, origin, HIDDEN_BEGIN, HIDDEN_END, [])


def student_notebook(solution: nbformat.NotebookNode, origin: str = "<solution>"):
    """The student version of one solution notebook (a new notebook; the input is unchanged)."""
    notebook = nbformat.from_dict(solution)
    notebook.cells = [c for c in notebook.cells if SOLUTION_ONLY not in c.metadata.get("tags", [])]
    tasks = 0
    for index, cell in enumerate(notebook.cells):
        where = f"{origin}, cell {index}"
        nbgrader = cell.metadata.get("nbgrader", {})
        is_solution = nbgrader.get("solution", False)
        if cell.cell_type == "code":
            cell.source, hidden = _remove_hidden_tests(cell.source, where)
            if hidden and not nbgrader.get("grade", False):
                raise ValueError(f"{where}: hidden tests in a cell that is not an autograder test.")
            cell.source, regions = _clear_regions(cell.source, where)
            if regions and not is_solution:
                raise ValueError(f"{where}: a solution region in a cell not marked solution.")
            if is_solution and not regions:
                cell.source = "\n".join(CODE_STUB)
            cell.outputs, cell.execution_count = [], None
        elif is_solution:
            cell.source = TEXT_STUB
        tasks += is_solution
    if tasks == 0:
        raise ValueError(f"{origin}: no nbgrader solution cell; nothing for the student to do.")
    return notebook


def solutions() -> list[Path]:
    """The solution sources, ``notebooks/exercises/ex*.py``, in name order."""
    return sorted(EXERCISES.glob("ex*.py"))


def expected_files() -> dict[Path, str]:
    """Every student file (``.py`` and ``.ipynb``) and the text it should hold."""
    files = {}
    for solution in solutions():
        notebook = student_notebook(jupytext.read(solution, fmt="py:percent"), str(solution))
        for index, cell in enumerate(notebook.cells):
            cell.id = f"{solution.stem}-{index}"  # stable ids: regenerating changes nothing
        files[STUDENT / solution.name] = jupytext.writes(notebook, "py:percent")
        files[STUDENT / solution.with_suffix(".ipynb").name] = jupytext.writes(notebook, "ipynb")
    return files


def stale_files() -> list[Path]:
    """Student files that are missing or differ from what the solutions generate."""
    return [
        path
        for path, text in expected_files().items()
        if not path.exists() or path.read_text() != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    parser.add_argument(
        "--nbgrader-config",
        type=Path,
        metavar="PATH",
        help="only write an nbgrader_config.py that drops the solution-only cells, as we do",
    )
    args = parser.parse_args(argv)
    if args.nbgrader_config:
        args.nbgrader_config.write_text(NBGRADER_CONFIG)
        print(f"wrote {args.nbgrader_config}")
        return 0
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)}")
        if stale:
            print("run: python scripts/make_student_versions.py")
        return 1 if stale else 0
    STUDENT.mkdir(parents=True, exist_ok=True)
    for old in STUDENT.glob("ex*"):
        old.unlink()
    for path, text in expected_files().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
