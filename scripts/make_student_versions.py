"""Generate the student versions of the coursework exercises from their solutions.

Each solution ``notebooks/exercises/exNN_*.py`` (py:percent) marks its answer with

    # BEGIN SOLUTION
    ...solution code...
    # END SOLUTION

The student version, ``notebooks/exercises/student/exNN_*.py`` and its ``.ipynb`` (not
executed: the self-checks fail there until the student writes the code), replaces each
marked block with ``# Write your code here.`` and ``raise NotImplementedError`` at the
marker's indentation.

Usage:
    python scripts/make_student_versions.py          # (re)write the student versions
    python scripts/make_student_versions.py --check  # exit 1 if any is missing or stale
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parent.parent
EXERCISES = ROOT / "notebooks" / "exercises"
STUDENT = EXERCISES / "student"
BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")


def student_source(solution: str, origin: str = "<solution>") -> str:
    """The student version of one py:percent solution source (a string)."""
    lines, inside, blocks = [], False, 0
    for number, line in enumerate(solution.splitlines(), start=1):
        begin = BEGIN.match(line)
        if begin:
            if inside:
                raise ValueError(f"{origin}:{number}: BEGIN SOLUTION inside another block.")
            inside, blocks = True, blocks + 1
            indent = begin.group("indent")
            lines += [f"{indent}# Write your code here.", f"{indent}raise NotImplementedError"]
        elif END.match(line):
            if not inside:
                raise ValueError(f"{origin}:{number}: END SOLUTION without BEGIN SOLUTION.")
            inside = False
        elif not inside:
            lines.append(line)
    if inside:
        raise ValueError(f"{origin}: BEGIN SOLUTION is never closed by END SOLUTION.")
    if blocks == 0:
        raise ValueError(f"{origin}: no '# BEGIN SOLUTION' block; nothing for the student to do.")
    return "\n".join(lines) + "\n"


def solutions() -> list[Path]:
    """The solution sources, ``notebooks/exercises/ex*.py``, in name order."""
    return sorted(EXERCISES.glob("ex*.py"))


def expected_files() -> dict[Path, str]:
    """Every student file (``.py`` and ``.ipynb``) and the text it should hold."""
    files = {}
    for solution in solutions():
        source = student_source(solution.read_text(), str(solution))
        files[STUDENT / solution.name] = source
        notebook = jupytext.reads(source, fmt="py:percent")
        for index, cell in enumerate(notebook.cells):
            cell.id = f"{solution.stem}-{index}"  # stable ids: regenerating changes nothing
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
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)}")
        if stale:
            print("run: python scripts/make_student_versions.py")
        return 1 if stale else 0
    STUDENT.mkdir(parents=True, exist_ok=True)
    for path, text in expected_files().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
