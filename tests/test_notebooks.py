"""Every notebook pair is in sync, executed, and carries the python3 kernelspec."""

from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PAIRS = sorted(NOTEBOOKS.rglob("*.py"))
EXECUTED = [p.with_suffix(".ipynb") for p in PAIRS if "student" not in p.parts]


def cells(notebook):
    return [(c.cell_type, c.source.strip()) for c in notebook.cells]


def test_the_four_course_notebooks_exist():
    names = {p.stem for p in NOTEBOOKS.glob("0*.py")}
    assert {"01_gradient_decomposition", "02_ranking", "03_pruning", "04_mnist_evaluation"} <= names


@pytest.mark.parametrize("source", PAIRS, ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_pair_is_in_sync(source):
    paired = source.with_suffix(".ipynb")
    assert paired.exists(), f"{paired.name} is missing: run jupytext --sync {source.name}"
    from_py = jupytext.read(source, fmt="py:percent")
    from_ipynb = nbformat.read(paired, as_version=4)
    assert cells(from_py) == cells(from_ipynb), (
        f"{source.name} and {paired.name} differ: edit the .py, then rebuild the .ipynb "
        "(jupytext --to ipynb, execute, jupytext --sync)."
    )


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_committed_notebook_is_executed_with_kernelspec(path):
    notebook = nbformat.read(path, as_version=4)
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3"
    code = [c for c in notebook.cells if c.cell_type == "code" and c.source.strip()]
    assert code and all(c.execution_count is not None for c in code), "run the notebook first"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
