"""Coursework: the student versions match their solutions (by our generator and by nbgrader),
every self-check passes on its solution, and an unsolved student notebook shows one short line.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXERCISES = ROOT / "notebooks" / "exercises"
SOLUTIONS = sorted(EXERCISES.glob("ex*.py"))
STUDENT = EXERCISES / "student"


def load_script():
    spec = importlib.util.spec_from_file_location(
        "make_student_versions", ROOT / "scripts" / "make_student_versions.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cells(notebook):
    return [(c.cell_type, c.source.strip()) for c in notebook.cells]


def test_there_are_enough_exercises():
    assert len(SOLUTIONS) >= 10, [p.stem for p in SOLUTIONS]


def test_student_versions_are_up_to_date():
    stale = load_script().stale_files()
    assert not stale, f"run python scripts/make_student_versions.py; stale: {stale}"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_every_exercise_has_a_task_an_autograded_check_and_a_written_question(solution):
    notebook = jupytext.read(solution, fmt="py:percent")
    marked = [c for c in notebook.cells if "nbgrader" in c.metadata]
    tasks = [c for c in marked if c.cell_type == "code" and c.metadata["nbgrader"]["solution"]]
    checks = [c for c in marked if c.cell_type == "code" and c.metadata["nbgrader"]["grade"]]
    written = [c for c in marked if c.cell_type == "markdown" and c.metadata["nbgrader"]["grade"]]
    assert tasks and all("### BEGIN SOLUTION" in c.source for c in tasks)
    assert checks and all("gp.checks.check_" in c.source for c in checks)
    assert all(c.metadata["nbgrader"]["locked"] for c in checks), "checks are locked cells"
    assert written and all(c.metadata["nbgrader"]["points"] > 0 for c in written)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in marked]
    assert len(ids) == len(set(ids)), f"grade ids must be unique: {ids}"
    intro = notebook.cells[0].source
    assert "Learning goal" in intro and "Estimated time" in intro


def test_generator_follows_nbgrader_rules():
    script = load_script()
    notebook = nbformat.v4.new_notebook()
    solution_meta = {"nbgrader": {"solution": True, "grade": False, "grade_id": "a"}}
    notebook.cells = [
        nbformat.v4.new_code_cell(
            "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n\nf",
            metadata=solution_meta,
        ),
        nbformat.v4.new_markdown_cell("the answer", metadata={"nbgrader": {"solution": True}}),
        nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"solution": True}}),
    ]
    student = script.student_notebook(notebook)
    assert [c.source for c in student.cells] == [
        "def f():\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\nf",
        "YOUR ANSWER HERE",
        "# YOUR CODE HERE\nraise NotImplementedError()",
    ]
    assert notebook.cells[1].source == "the answer", "the solution notebook is left unchanged"


def test_generator_drops_solution_only_cells_and_hidden_tests():
    script = load_script()
    notebook = nbformat.v4.new_notebook()
    grade = {"nbgrader": {"solution": False, "grade": True, "grade_id": "c", "locked": True}}
    notebook.cells = [
        nbformat.v4.new_code_cell("f = 1", metadata={"nbgrader": {"solution": True}}),
        nbformat.v4.new_markdown_cell("It came out at 2%.", metadata={"tags": ["solution-only"]}),
        nbformat.v4.new_code_cell("assert 2 < 3", metadata={"tags": ["solution-only"]}),
        nbformat.v4.new_code_cell(
            "### BEGIN HIDDEN TESTS\nassert f == 1\n### END HIDDEN TESTS\ncheck(f)",
            metadata=grade,
        ),
    ]
    student = script.student_notebook(notebook)
    assert [c.source for c in student.cells] == [
        "# YOUR CODE HERE\nraise NotImplementedError()",
        "check(f)",
    ]


def test_generator_rejects_hidden_tests_outside_an_autograder_cell():
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            "### BEGIN HIDDEN TESTS\nx = 1\n### END HIDDEN TESTS",
            metadata={"nbgrader": {"solution": True, "grade": False}},
        )
    ]
    with pytest.raises(ValueError, match="not an autograder test"):
        load_script().student_notebook(notebook)


# How a visible markdown cell right after a result may begin: a heading, a question, or one
# of the reviewed cells that set up the next step (ex04's "Only now ... the test set",
# ex06's "Now the per-layer choice", ex07's "We remove 900 weights") or teach a fact that
# answers no question (ex05's "Memory: ..." cost of storing per-sample gradients).
NOT_AN_ANSWER = ("#", "**Q", "Only now", "Now", "We remove", "Memory:")


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_student_versions_ask_and_do_not_tell(solution):
    """After a result, the student version shows no interpretation and no assert on it.

    The interpretation after a result cell (the markdown that follows an untagged code
    cell after the first Predict prompt or the first check, before the written questions)
    and asserts on results are tagged solution-only. Left visible: asserts that compare the student's
    function with the library's on real data (torch.allclose), which check, not tell.
    """
    notebook = nbformat.read(STUDENT / f"{solution.stem}.ipynb", 4)
    first_check = next(
        i for i, c in enumerate(notebook.cells) if c.metadata.get("nbgrader", {}).get("grade")
    )
    # A Predict prompt before the task (ex03 opens with one) starts the rule there.
    first_predict = next(
        (
            i
            for i, c in enumerate(notebook.cells)
            if c.cell_type == "markdown" and "**Predict" in c.source
        ),
        first_check,
    )
    start = min(first_check, first_predict)
    for index, cell in enumerate(notebook.cells[start + 1 :], start=start + 1):
        if cell.cell_type == "code":
            asserts = [
                line for line in cell.source.splitlines() if line.strip().startswith("assert")
            ]
            assert all("torch.allclose" in line for line in asserts), (solution.stem, asserts)
        previous = notebook.cells[index - 1]
        if cell.cell_type == "markdown" and previous.cell_type == "code":
            grader = previous.metadata.get("nbgrader", {})
            opening = cell.source.lstrip().split("\n")[0]
            # After a check or the student's own code cell there is no result to interpret.
            mine = grader.get("grade") or grader.get("solution")
            assert mine or opening.startswith(NOT_AN_ANSWER), (
                f"{solution.stem}, cell {index}: interpretation after a result: {opening!r}"
            )


def test_generator_rejects_an_unclosed_block():
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            "### BEGIN SOLUTION\nx = 1", metadata={"nbgrader": {"solution": True}}
        )
    ]
    with pytest.raises(ValueError, match="never closed"):
        load_script().student_notebook(notebook)


def test_generator_rejects_a_region_in_an_unmarked_cell():
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")]
    with pytest.raises(ValueError, match="not marked solution"):
        load_script().student_notebook(notebook)


@pytest.mark.slow
def test_nbgrader_generate_assignment_makes_the_same_student_versions(tmp_path):
    nbgrader = shutil.which("nbgrader", path=str(Path(sys.executable).parent))
    if nbgrader is None:
        pytest.skip("nbgrader is not installed (pip install -e '.[dev]')")
    source = tmp_path / "source" / "exercises"
    source.mkdir(parents=True)
    for solution in SOLUTIONS:
        shutil.copy(solution.with_suffix(".ipynb"), source)
    (tmp_path / "nbgrader_config.py").write_text(load_script().NBGRADER_CONFIG)
    subprocess.run(
        [nbgrader, "generate_assignment", "exercises", f"--CourseDirectory.root={tmp_path}"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    for solution in SOLUTIONS:
        released = nbformat.read(tmp_path / "release" / "exercises" / f"{solution.stem}.ipynb", 4)
        ours = nbformat.read(STUDENT / f"{solution.stem}.ipynb", 4)
        assert cells(released) == cells(ours), f"{solution.stem}: nbgrader and our script differ"
        assert not any(c.get("outputs") for c in released.cells)


@pytest.mark.slow
@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_unsolved_student_notebook_shows_one_short_line(solution):
    """Execute the student notebook in a kernel, as a student would, and read the error."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(STUDENT / f"{solution.stem}.ipynb", 4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    os.environ.setdefault("MPLBACKEND", "Agg")
    with pytest.raises(CellExecutionError):
        client.execute()
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert len(errors) == 1
    error = errors[0]
    failing = next(c for c in notebook.cells if error in c.get("outputs", []))
    assert "gp.checks.check_" in failing.source, "the stub must fail in the self-check cell"
    assert error.ename == "CheckFailed"
    assert "NotImplementedError: replace the stub" in error.evalue
    assert len(error.traceback) == 1, error.traceback


def student_lines(solution: Path) -> int:
    """Non-blank, non-comment lines between the solution markers of the code cells."""
    notebook = jupytext.read(solution, fmt="py:percent")
    count = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        inside = False
        for line in cell.source.splitlines():
            stripped = line.strip()
            if "### BEGIN SOLUTION" in stripped:
                inside = True
            elif "### END SOLUTION" in stripped:
                inside = False
            elif inside and stripped and not stripped.startswith("#"):
                count += 1
    return count


def test_student_lines_counts_only_code_between_the_markers(tmp_path):
    source = (
        "# %%\nx = 1\n\n# %%\ndef f():\n    ### BEGIN SOLUTION\n    # why\n\n    a = 1\n"
        "    return a  # done\n    ### END SOLUTION\n\n# %% [markdown]\n# ### BEGIN SOLUTION\n"
        "# prose\n# ### END SOLUTION\n"
    )
    path = tmp_path / "ex99_x.py"
    path.write_text(source)
    assert student_lines(path) == 2


# Issue 19's depth bar: the student writes the core of a method in at least six exercises.
DEEP_LINES, DEEP_EXERCISES = 15, 6


def test_enough_exercises_have_the_student_write_a_method():
    counts = {solution.stem.split("_")[0]: student_lines(solution) for solution in SOLUTIONS}
    deep = [name for name, count in counts.items() if count >= DEEP_LINES]
    assert len(deep) >= DEEP_EXERCISES, (
        f"{len(deep)} exercises have >= {DEEP_LINES} lines of student code, "
        f"{DEEP_EXERCISES} needed; lines per exercise: {counts}"
    )
