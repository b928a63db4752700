"""The README a newcomer follows: its commands are the ones CI and the tests run, its
five-line example works, and every file it links to or shows exists."""

from __future__ import annotations

import re
import shlex
from importlib.metadata import entry_points
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import torch

import gradprune_lite as gp
from gradprune_lite._install_check import CPU_INSTALL

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CI_SCRIPT = (ROOT / ".ci" / "run").read_text()

#: The developers' install and test commands: "the" commands, the ones CI runs.
INSTALL = 'pip install -e ".[dev]"'
TEST = "python -m pytest --nbval"
#: The student's install: the course extra, which the dev extra contains.
COURSE_INSTALL = 'pip install -e ".[course]"'
#: Tools a student does not need; nbgrader's would add its menus to every notebook.
DEVELOPER_TOOLS = {"nbgrader", "playwright", "ruff", "numba", "hypothesis", "pytest", "nbval"}
# Every shell command the README shows, and the file that runs it (with a pattern showing it
# does): a command added to the README without a test or CI step behind it fails here.
EXERCISED_BY = {
    # CI makes a fresh virtual environment the same way before it installs.
    "python3 -m venv .venv": (".ci/run", r"python3 -m venv "),
    "source .venv/bin/activate": (".ci/run", r'source "\$venv/bin/activate"'),
    INSTALL: (".ci/run", re.escape(INSTALL)),
    TEST: (".ci/run", re.escape(TEST)),
    "jupyter lab": ("tests/test_browser.py", r'"-m",\s*"jupyter",\s*"lab",'),
    "gradprune-lite compare --quick": ("tests/test_cli.py", r'main\(\["compare", "--quick"'),
    "torchrun --standalone --nproc_per_node=2 scripts/ddp_prune.py": (
        "tests/test_distributed.py",
        r'"torch\.distributed\.run"',
    ),
    "python scripts/make_student_versions.py": (
        "tests/test_exercises.py",
        r'ROOT / "scripts" / "make_student_versions\.py"',
    ),
}
# README commands that no test or CI step can run here, and what checks them instead.
CHECKED_OTHERWISE = {
    # CI has no network to PyTorch's index; the command is the one the install check
    # prints, and test_cpu_route_installs_torch_and_torchvision_together checks its form.
    CPU_INSTALL: "tests/test_readme.py",
    # CI installs the dev extra, which holds the course extra (tests/test_binder.py
    # expands it); test_course_extra_holds_the_notebooks_tools_only checks what it holds.
    COURSE_INSTALL: "tests/test_readme.py",
}


def fenced_blocks(language: str) -> list[str]:
    """The README's fenced code blocks of ``language``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)


def shell_commands() -> list[str]:
    """Each non-comment line of the README's bash blocks, trailing comment removed."""
    lines = (
        line.split(" #", 1)[0].strip()
        for block in fenced_blocks("bash")
        for line in block.splitlines()
    )
    return [line for line in lines if line and not line.startswith("#")]


def ci_commands() -> list[str]:
    """The command lines of .ci/run (comments and blank lines dropped)."""
    return [
        line.strip()
        for line in CI_SCRIPT.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_install_and_test_commands_are_the_ones_ci_runs():
    commands = shell_commands()
    assert INSTALL in commands and TEST in commands
    assert INSTALL in ci_commands() and TEST in ci_commands()
    assert shlex.split(INSTALL) == ["pip", "install", "-e", ".[dev]"]


def test_a_virtual_environment_comes_before_the_install_as_in_ci():
    commands = shell_commands()
    assert commands.index("python3 -m venv .venv") < commands.index(INSTALL)
    assert commands.index("source .venv/bin/activate") < commands.index(INSTALL)
    ci = CI_SCRIPT
    assert ci.index("python3 -m venv") < ci.index("source ") < ci.index(INSTALL)


def test_cpu_route_installs_torch_and_torchvision_together():
    commands = shell_commands()
    assert CPU_INSTALL in commands, "the README gives no literal CPU install command"
    assert shlex.split(CPU_INSTALL) == [
        "pip",
        "install",
        "torch",
        "torchvision",
        "--index-url",
        "https://download.pytorch.org/whl/cpu",
    ]
    # After the virtual environment, before either install of this package.
    cpu = commands.index(CPU_INSTALL)
    assert commands.index("source .venv/bin/activate") < cpu
    assert cpu < commands.index(COURSE_INSTALL) and cpu < commands.index(INSTALL)
    before_install = README[: README.index(COURSE_INSTALL)]
    assert "https://pytorch.org/get-started/locally/" in before_install
    assert "operator torchvision::nms does not exist" in before_install  # why both


def test_student_route_uses_the_course_extra_and_developers_the_dev_extra():
    commands = shell_commands()
    assert commands.index(COURSE_INSTALL) < commands.index("jupyter lab")
    student = README[README.index("**As a student**") : README.index("**As a developer")]
    assert COURSE_INSTALL in student and INSTALL not in student
    assert INSTALL in README[README.index("**As a developer") :]
    assert "nbgrader" in README[README.index(INSTALL) : README.index("## Run the tests")]


def test_course_extra_holds_the_notebooks_tools_only():
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = extras["optional-dependencies"]
    course = {re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0].lower() for spec in extras["course"]}
    assert {"jupyterlab", "ipywidgets", "matplotlib", "jupytext"} <= course
    assert not course & DEVELOPER_TOOLS, f"developer tools in the course extra: {course}"
    assert "gradprune-lite[course]" in extras["dev"]  # dev = course + the developer tools


def test_readme_says_what_the_tests_compare_and_how_to_restore_the_notebooks():
    tests = README[README.index("## Run the tests") : README.index("**Budgets:**")]
    assert "git checkout -- notebooks/" in tests and "git stash" in tests
    assert "sanitize.cfg" in tests and "outputs" in tests
    assert "apt-get install -y chromium" in tests  # the browser test's missing piece


def test_every_shell_command_is_run_by_a_test_or_ci():
    for command in shell_commands():
        if command in CHECKED_OTHERWISE:
            continue
        assert command in EXERCISED_BY, f"README command {command!r} is run by no test or CI step"
        path, pattern = EXERCISED_BY[command]
        assert re.search(pattern, (ROOT / path).read_text()), f"{path} no longer runs {command!r}"


def test_command_line_tool_is_installed_under_the_readme_name():
    scripts = {entry.name: entry.value for entry in entry_points(group="console_scripts")}
    assert scripts.get("gradprune-lite") == "gradprune_lite.cli:main"


def test_five_line_example_runs_and_prunes_ninety_percent():
    setup, example, _ = fenced_blocks("python")
    code_lines = [line for line in example.splitlines() if line.strip()]
    assert len(code_lines) <= 5, f"the example has {len(code_lines)} lines, not five or fewer"
    namespace: dict = {}
    torch.manual_seed(0)
    exec(compile(setup, "README setup", "exec"), namespace)
    exec(compile(example, "README example", "exec"), namespace)

    # What the README claims: exactly 90% of the prunable weights removed, kept at zero
    # while the user's own optimizer trains on.
    model, optimizer, batches = namespace["model"], namespace["optimizer"], namespace["batches"]
    weights = [model[1].weight, model[3].weight]
    pruned = [w.detach() == 0 for w in weights]
    total = sum(w.numel() for w in weights)
    assert sum(int(p.sum()) for p in pruned) == round(0.9 * total)
    inputs, targets = batches[0]
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
    assert all(bool((w.detach()[p] == 0).all()) for w, p in zip(weights, pruned))


def test_beyond_masks_example_runs_and_does_what_it_says():
    setup, example, beyond = fenced_blocks("python")
    namespace: dict = {}
    torch.manual_seed(0)
    for name, code in (("setup", setup), ("example", example), ("beyond", beyond)):
        exec(compile(code, f"README {name}", "exec"), namespace)
    model, small, cost, x = (namespace[k] for k in ("model", "small", "cost", "x"))
    dense_params = sum(p.numel() for p in model.parameters())
    assert cost["params_dense"] < dense_params, "structured_prune did not shrink the model"
    assert small[1].out_features < model[1].out_features
    assert abs(gp.sparsity(model) - 0.95) < 1e-3
    torch.testing.assert_close(namespace["fast"](x), model(x), rtol=1e-5, atol=1e-5)
    overlaps = namespace["stable"].overlaps
    assert overlaps.shape == (1, 1) and 0.0 <= float(overlaps.min()) <= 1.0


def relative_targets() -> list[str]:
    """Every link and image target in the README that points inside the repository."""
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", README)
    targets += re.findall(r'<img[^>]+src="([^"]+)"', README)
    return [t for t in targets if not urlparse(t).scheme and not t.startswith("#")]


def test_every_relative_link_and_image_exists():
    targets = relative_targets()
    assert "docs/RESULTS.md" in targets and "docs/PERFORMANCE.md" in targets
    assert any(t.endswith(".png") for t in targets), "the README shows no picture"
    missing = [t for t in targets if not (ROOT / unquote(t.split("#", 1)[0])).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_binder_badge_opens_jupyterlab_on_the_first_notebook():
    badge = re.search(r"\(https://mybinder\.org/v2/gh/([^)]+)\)", README)
    assert badge, "no Binder badge link"
    query = urlparse("https://mybinder.org/v2/gh/" + badge.group(1)).query
    urlpath = unquote(dict(part.split("=", 1) for part in query.split("&"))["urlpath"])
    assert urlpath.startswith("lab/tree/")
    assert (ROOT / urlpath.removeprefix("lab/tree/")).is_file()
    assert urlpath.endswith("notebooks/01_gradient_decomposition.ipynb")
    # The address does not exist before publication; the README says so beside the badge.
    repository = "github.com/" + "/".join(badge.group(1).split("/")[:2])
    way_in = README[README.index("**1. In your browser") : README.index("**2. On your machine")]
    assert repository in way_in and "published" in way_in


def test_readme_counts_the_notebooks_there_are():
    words = {"four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}
    said = re.search(r"(\w+) notebooks tell the story", README)
    assert said and said.group(1).lower() in words, "the README no longer counts the notebooks"
    assert words[said.group(1).lower()] == len(list((ROOT / "notebooks").glob("0*.ipynb")))
