"""Every notebook pair is in sync, executed, and carries the python3 kernelspec; and
notebook 01 runs on a fresh machine, where no trained network is cached yet."""

import os
from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PAIRS = sorted(NOTEBOOKS.rglob("*.py"))
EXECUTED = [p.with_suffix(".ipynb") for p in PAIRS if "student" not in p.parts]


def cells(notebook):
    return [(c.cell_type, c.source.strip()) for c in notebook.cells]


def test_the_seven_course_notebooks_exist():
    names = {p.stem for p in NOTEBOOKS.glob("0*.py")}
    assert {
        "01_gradient_decomposition",
        "02_ranking",
        "03_pruning",
        "04_mnist_evaluation",
        "05_second_order",
        "06_structure_and_speed",
        "07_when_gradients_win",
    } == names


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


def unexecuted_state(notebook) -> list[str]:
    """What keeps ``notebook`` from being a committed, executed notebook, in words."""
    problems = []
    kernel = notebook.metadata.get("kernelspec", {}).get("name")
    if kernel != "python3":
        problems.append(f"kernelspec {kernel!r} instead of 'python3'")
    code = [
        (number, c)
        for number, c in enumerate(notebook.cells, 1)
        if c.cell_type == "code" and c.source.strip()
    ]
    if not code:
        problems.append("no code cells")
    unrun = [number for number, c in code if c.execution_count is None]
    if unrun:
        problems.append(f"{len(unrun)} code cells without an execution count (cells {unrun})")
    failed = [
        number for number, c in code if any(o.get("output_type") == "error" for o in c.outputs)
    ]
    if failed:
        problems.append(f"an error output in cells {failed}")
    return problems


def not_executed_message(notebook, where: str) -> str | None:
    """None for an executed notebook; else one message: which file, what, and the fix.

    JupyterLab autosaves a notebook half-run or cleared while a student works in it, so
    the message leads with restoring the committed file.
    """
    problems = unexecuted_state(notebook)
    if not problems:
        return None
    return (
        f"{where} is not the committed, executed notebook: {'; '.join(problems)}. "
        f"If you edited it in Jupyter, restore it with `git checkout -- {where}` (or keep "
        "your work aside with `git stash`); if you changed it on purpose, run it top to "
        f"bottom (jupyter nbconvert --to notebook --execute --inplace {where})."
    )


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_committed_notebook_is_executed_with_kernelspec(path):
    where = path.relative_to(NOTEBOOKS.parent).as_posix()
    message = not_executed_message(nbformat.read(path, as_version=4), where)
    assert message is None, message


def test_a_notebook_saved_mid_run_is_named_with_the_restore_command():
    notebook = nbformat.read(NOTEBOOKS / "03_pruning.ipynb", as_version=4)
    assert not_executed_message(notebook, "notebooks/03_pruning.ipynb") is None
    code = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
    for index in code[2:]:  # what an autosave during Run All leaves
        notebook.cells[index].execution_count = None
    del notebook.metadata["kernelspec"]
    message = not_executed_message(notebook, "notebooks/03_pruning.ipynb")
    assert message.startswith("notebooks/03_pruning.ipynb is not the committed")
    assert f"{len(code) - 2} code cells without an execution count" in message
    assert "kernelspec None" in message
    assert "git checkout -- notebooks/03_pruning.ipynb" in message and "git stash" in message


#: The cell of notebook 01 that checks the batch gradient against the per-sample ones.
FIRST_RUN_CHECK = "mean of per-sample gradients == batch gradient"


@pytest.mark.slow
def test_notebook_01_first_cells_run_on_an_empty_model_cache(tmp_path, monkeypatch):
    """A fresh laptop: nothing cached, so ``gp.trained`` trains LeNet-300-100 in the kernel.

    nbval re-executes the notebooks after the other tests have filled the cache, so only
    this test sees the first-run path. It trains 10 epochs on 55,000 digits: the whole test
    took 25 s on 2 cores at a load average of 1.7, kernel start included, and 117 s at a
    load average of 16 (5 December 2026).
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(NOTEBOOKS / "01_gradient_decomposition.ipynb", as_version=4)
    check = next(
        (i for i, c in enumerate(notebook.cells) if FIRST_RUN_CHECK in c.source),
        None,
    )
    assert check is not None, f"notebook 01 no longer prints {FIRST_RUN_CHECK!r}"
    notebook.cells = notebook.cells[: check + 1]
    cache = tmp_path / "cache"
    # The kernel inherits this environment: an empty cache, and never a download.
    monkeypatch.setenv("GRADPRUNE_CACHE", str(cache))
    monkeypatch.setenv("GRADPRUNE_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", os.environ.get("MPLBACKEND", "Agg"))
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"notebook 01 fails on its first run (empty model cache):\n{error}")
    printed = "".join(
        o.get("text", "") for o in notebook.cells[check].outputs if o.output_type == "stream"
    )
    assert f"{FIRST_RUN_CHECK}: True" in printed, printed
    # It did train here, rather than load a network cached elsewhere.
    assert list((cache / "models").glob("lenet_300_100-seed0-*.pt"))
