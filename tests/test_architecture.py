"""The layers of docs/ARCHITECTURE.md hold: core → experiment → course, cli; no cycles.

Read from the source with ``ast``, never by importing, so that an import hidden inside a
function (a "lazy" import) counts exactly like one at the top of a file.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gradprune_lite"
#: What the core must never import: the layers built on top of it.
ABOVE_CORE = ("gradprune_lite.experiment", "gradprune_lite.course", "gradprune_lite.cli")
#: What ``import gradprune_lite`` must not load until it is used.
HEAVY = ("matplotlib", "tqdm", "torch_pruning", "ipywidgets", "gradprune_lite.experiment")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str) -> set[str]:
    """Package modules that ``name`` imports anywhere in its file, functions included.

    ``from .x import y`` counts as importing ``x.y`` when that is a module, else ``x``.
    """
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


GRAPH = {name: imported_modules(name) for name in MODULES}


def test_the_walk_sees_the_package():
    assert "gradprune_lite.core.criteria" in MODULES and "gradprune_lite.cli" in MODULES
    assert "gradprune_lite.core.layers" in GRAPH["gradprune_lite.core.criteria"]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("gradprune_lite.core")))
def test_the_core_imports_nothing_above_it(name):
    above = sorted(t for t in GRAPH[name] if t.startswith(ABOVE_CORE))
    assert not above, (
        f"{name} imports {above}; the core must stand alone (docs/ARCHITECTURE.md). Move what "
        "it needs into gradprune_lite/core instead."
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_cycles_finds_a_cycle_of_three_and_nothing_in_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycle_among_the_package_modules():
    # A package's __init__ that re-exports its children is no cycle: children import
    # siblings, never their own package.
    children_of_init = {
        name: {t for t in targets if not name.startswith(t + ".")}
        for name, targets in GRAPH.items()
    }
    assert cycles(children_of_init) == [], "import cycle; see docs/ARCHITECTURE.md"


def test_import_gradprune_lite_loads_no_plotting_progress_or_experiment_code():
    # torch itself imports tqdm (torch/hub.py, when it is installed), so what counts is what
    # gradprune_lite adds on top of torch.
    code = (
        "import sys, torch\n"
        "before = set(sys.modules)\n"
        "import gradprune_lite as gp\n"
        f"print([m for m in {HEAVY!r} if m in set(sys.modules) - before])\n"
        "print(sorted(set(gp.__all__) - set(dir(gp))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded, missing_from_dir = result.stdout.splitlines()
    assert loaded == "[]", f"import gradprune_lite loaded {loaded}"
    assert missing_from_dir == "[]", f"dir(gp) lacks {missing_from_dir}"


def test_every_public_name_resolves_on_first_use():
    code = (
        "import sys, gradprune_lite as gp\n"
        "missing = [n for n in gp.__all__ if getattr(gp, n, None) is None]\n"
        "print(missing, 'matplotlib' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "True"]  # the course's plots did load, on use


def test_the_version_is_one_number():
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    (declared,) = re.findall(r'^version = "([^"]+)"', pyproject, flags=re.MULTILINE)
    import gradprune_lite

    assert gradprune_lite.__version__ == declared
    changelog = (PACKAGE.parent / "CHANGELOG.md").read_text()
    assert f"## [{declared}]" in changelog, "CHANGELOG.md has no section for this release"


ARCHITECTURE = PACKAGE.parent / "docs" / "ARCHITECTURE.md"


def test_the_codemap_names_every_module():
    text = ARCHITECTURE.read_text()
    missing = [
        str(path.relative_to(PACKAGE))
        for path in MODULES.values()
        if "checks" not in path.parts and f"`{path.name}`" not in text
    ]
    assert not missing, f"docs/ARCHITECTURE.md's codemap lacks {missing}"


def test_the_criteria_tables_of_the_architecture_are_the_registries():
    import gradprune_lite as gp

    text = ARCHITECTURE.read_text()
    body = text.split("<!-- criteria -->\n")[1].split("<!-- /criteria -->")[0]
    assert body == gp.CRITERIA.markdown() + "\n" + gp.GROUP_CRITERIA.markdown(), (
        "the criteria tables of docs/ARCHITECTURE.md are stale; paste the output of "
        "python -c 'import gradprune_lite as gp; print(gp.CRITERIA.markdown()); "
        'print(gp.GROUP_CRITERIA.markdown(), end="")\''
    )
