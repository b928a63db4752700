"""nbgrader's whole workflow on the real exercises: generate, submit, autograde, feedback.

One temporary course (``tmp_path``, its ``nbgrader_config.py`` written here from the one in
``scripts/make_student_versions.py``), two students: ``solver`` submits the solution
notebooks, ``untouched`` the released student versions as handed out. Autograde must give
the solutions full marks and the untouched versions zero on every autograded cell, with
the hidden tests (removed from the release) put back and run.

Which exercises, and why: autograde executes every cell of every submission, so the test
takes the exercises that run fastest. Measured with nbconvert on the shared machine
(5 December 2026, load 9–11, so slow in absolute terms): ex03 40 s, ex02 42 s, ex01 67 s,
ex04 86 s; the notes in docs/INSTRUCTORS.md (load 2.5–3.8) rank them the same way (ex03
8 s, ex02 7 s, ex01 6 s, ex04 13 s; ex10 trains and takes 10–58 s). ex03 needs no data and
no trained model; ex02 loads the cached reference LeNet-300-100, as every notebook does.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from test_exercises import ROOT, STUDENT, load_script

pytestmark = pytest.mark.slow

EXERCISES = ["ex02_global_threshold", "ex03_mask_hook"]
ASSIGNMENT = "exercises"
STUDENTS = {"solver": ROOT / "notebooks" / "exercises", "untouched": STUDENT}


def nbgrader(course: Path, *args: str) -> None:
    command = shutil.which("nbgrader", path=str(Path(sys.executable).parent))
    if command is None:
        pytest.skip("nbgrader is not installed (pip install -e '.[dev]')")
    done = subprocess.run([command, *args], cwd=course, capture_output=True, text=True)
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course after generate_assignment, submission by both students, and autograde."""
    course = tmp_path_factory.mktemp("course")
    (course / "nbgrader_config.py").write_text(
        load_script().NBGRADER_CONFIG
        + f"c.CourseDirectory.root = {str(course)!r}\n"
        + "c.ExecutePreprocessor.timeout = 600\n"
    )
    source = course / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    for stem in EXERCISES:
        shutil.copy(ROOT / "notebooks" / "exercises" / f"{stem}.ipynb", source)
    nbgrader(course, "generate_assignment", ASSIGNMENT)
    for student, folder in STUDENTS.items():
        submitted = course / "submitted" / student / ASSIGNMENT
        submitted.mkdir(parents=True)
        for stem in EXERCISES:
            shutil.copy(folder / f"{stem}.ipynb", submitted)
    nbgrader(course, "autograde", ASSIGNMENT)
    nbgrader(course, "generate_feedback", ASSIGNMENT)
    return course


def autograded_scores(course: Path, student: str) -> dict[str, tuple[float, float]]:
    """(exercise, grade id) → (score, max score) of every autograded (code) cell."""
    from nbgrader.api import Gradebook

    scores = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for stem in EXERCISES:
            notebook = gradebook.find_submission_notebook(stem, ASSIGNMENT, student)
            for grade in notebook.grades:
                if grade.cell.cell_type == "code":
                    scores[f"{stem}:{grade.name}"] = (grade.score, grade.max_score)
    return scores


def test_the_release_has_no_hidden_tests_and_no_solution_only_cells(course):
    for stem in EXERCISES:
        released = nbformat.read(course / "release" / ASSIGNMENT / f"{stem}.ipynb", 4)
        text = "\n".join(cell.source for cell in released.cells)
        assert "HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text
        assert not any("solution-only" in c.metadata.get("tags", []) for c in released.cells)
        ours = nbformat.read(STUDENT / f"{stem}.ipynb", 4)
        assert [c.source for c in released.cells] == [c.source for c in ours.cells]


def test_grading_runs_the_hidden_tests(course):
    for stem in EXERCISES:
        graded = nbformat.read(course / "autograded" / "solver" / ASSIGNMENT / f"{stem}.ipynb", 4)
        checks = [c for c in graded.cells if c.metadata.get("nbgrader", {}).get("grade")]
        hidden = [c for c in checks if c.cell_type == "code" and "BEGIN HIDDEN TESTS" in c.source]
        assert hidden, f"{stem}: no autograded cell has hidden tests"
        assert not any(o.output_type == "error" for c in hidden for o in c.outputs)


def test_solutions_get_full_marks_on_every_autograded_cell(course):
    scores = autograded_scores(course, "solver")
    assert scores, "no autograded cell was graded"
    assert {cell: score for cell, (score, top) in scores.items() if score != top} == {}
    assert all(top > 0 for _, top in scores.values())


def test_untouched_student_versions_get_zero_on_every_autograded_cell(course):
    scores = autograded_scores(course, "untouched")
    assert scores.keys() == autograded_scores(course, "solver").keys()
    assert {cell: score for cell, (score, _) in scores.items() if score != 0} == {}


def test_feedback_is_generated_for_both_students(course):
    for student in STUDENTS:
        for stem in EXERCISES:
            feedback = course / "feedback" / student / ASSIGNMENT / f"{stem}.html"
            assert feedback.is_file() and "Score" in feedback.read_text()
